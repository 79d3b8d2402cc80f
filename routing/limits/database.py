"""The limiter's algorithms on the database, for deployments without Redis.

Without Redis the only store every worker (and every host) already shares is
the database: SQLite in a zero-config run, PostgreSQL otherwise. Per-process
state would let each worker admit the full limit (a key with 3 requests a
minute served 6 with two workers, a budget reached 176 %), so the limits
live here instead and hold exactly across workers.

Same algorithms and invariants as the Redis script (:mod:`routing.limits.limiter`),
one row per entry in :class:`routing.models.LimiterEntry`:

- requests and tokens: a sliding-window log, one row per admitted request
  (``weight`` 1 or its tokens, ``expires_ms`` = admission + window);
- concurrency: one row per lease, ``expires_ms`` its expiry, renewed by
  long streams;
- budgets: one counter row (``member`` empty) per key/team and period,
  started from the usage record (the sum of costs) when missing.

Check-and-consume is one transaction per request. On SQLite the
transaction takes the write lock up front (``transaction_mode``
``IMMEDIATE`` in settings), so decisions are serialised across processes;
on PostgreSQL each limit key is locked with a transaction-scoped advisory
lock, in sorted order (no deadlock), and the clock is the database's, so
hosts with skewed clocks agree. Rows of a key are pruned as the key is
used, and every row past its expiry at most once a minute per process.

Measured on the 2-core dev machine (``bench`` note in the report): the
decision costs one short write transaction, about a millisecond.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.db import connection, transaction

from routing.limits.types import Decision, Limit
from routing.models import LimiterEntry

logger = logging.getLogger(__name__)

_PURGE_EVERY_MS = 60_000


class DatabaseLimiter:
    """Check-and-consume limits in the default database (see module docstring)."""

    def __init__(self) -> None:
        self._next_purge = 0.0

    # -- helpers -----------------------------------------------------------------

    @staticmethod
    def _table() -> str:
        return LimiterEntry._meta.db_table

    @staticmethod
    def _now_ms(cursor: Any) -> int:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint")
            return int(cursor.fetchone()[0])
        return int(time.time() * 1000)

    @staticmethod
    def _lock(cursor: Any, keys: list[str]) -> None:
        if connection.vendor != "postgresql":
            return  # SQLite: the IMMEDIATE transaction already holds the write lock
        for key in sorted(set(keys)):
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [key])

    # -- acquire -----------------------------------------------------------------

    def acquire(self, limits: list[Limit], member: str) -> Decision:
        """Admit the request against every limit, or name the one it breaks."""
        table = self._table()
        with transaction.atomic(), connection.cursor() as cursor:
            self._lock(cursor, [limit.key for limit in limits])
            now = self._now_ms(cursor)
            self._maybe_purge(cursor, table, now)
            remaining: list[int] = []
            resets: list[int] = []
            budgets: dict[str, int] = {}
            for limit in limits:
                used, reset, retry = self._usage(cursor, table, limit, now, budgets)
                if retry is not None:
                    return Decision(
                        False,
                        member,
                        limits,
                        failed=limit,
                        retry_after_ms=max(int(retry), 1),
                        engine="database",
                        used=used,
                    )
                remaining.append(limit.limit - used - limit.cost)
                resets.append(int(reset) if reset > 0 else limit.span_ms)
            for limit in limits:
                self._commit(cursor, table, limit, now, member)
        return Decision(
            True, member, limits, remaining=remaining, reset_ms=resets, engine="database"
        )

    def _usage(
        self, cursor: Any, table: str, limit: Limit, now: int, budgets: dict[str, int]
    ) -> tuple[int, int, int | None]:
        """Return (used, ms until reset, ms until it would fit or None)."""
        if limit.kind == "b":
            return self._budget(cursor, table, limit, now)
        cursor.execute(
            f"DELETE FROM {table} WHERE limit_key = %s AND member <> '' AND expires_ms <= %s",  # noqa: S608
            [limit.key, now],
        )
        cursor.execute(
            f"SELECT weight, expires_ms FROM {table} WHERE limit_key = %s "  # noqa: S608
            "ORDER BY expires_ms, member",
            [limit.key],
        )
        rows = cursor.fetchall()
        used = len(rows) if limit.kind in ("r", "c") else sum(int(w) for w, _e in rows)
        reset = int(rows[0][1]) - now if rows and limit.kind != "c" else 0
        if used + limit.cost <= limit.limit:
            return used, reset, None
        if limit.kind == "c":
            return used, reset, 1000
        # Sliding-window log: retry when enough of the oldest entries expire.
        need, freed = used + limit.cost - limit.limit, 0
        for weight, expires in rows:
            freed += 1 if limit.kind == "r" else int(weight)
            if freed >= need:
                return used, reset, int(expires) - now
        return used, reset, limit.span_ms

    def _budget(
        self, cursor: Any, table: str, limit: Limit, now: int
    ) -> tuple[int, int, int | None]:
        cursor.execute(
            f"SELECT weight, expires_ms FROM {table} WHERE limit_key = %s AND member = ''",  # noqa: S608
            [limit.key],
        )
        row = cursor.fetchone()
        if row is None or int(row[1]) <= now:
            spent = limit.initial() if limit.initial else 0
            expires = now + limit.span_ms
            cursor.execute(
                f"DELETE FROM {table} WHERE limit_key = %s AND member = ''",  # noqa: S608
                [limit.key],
            )
            cursor.execute(
                f"INSERT INTO {table} (limit_key, member, weight, expires_ms) "  # noqa: S608
                "VALUES (%s, '', %s, %s)",
                [limit.key, spent, expires],
            )
        else:
            spent, expires = int(row[0]), int(row[1])
        reset = expires - now
        if spent + limit.cost > limit.limit:
            return spent, reset, reset
        return spent, reset, None

    def _commit(self, cursor: Any, table: str, limit: Limit, now: int, member: str) -> None:
        if limit.kind == "b":
            cursor.execute(
                f"UPDATE {table} SET weight = weight + %s "  # noqa: S608
                "WHERE limit_key = %s AND member = ''",
                [limit.cost, limit.key],
            )
            return
        weight = limit.cost if limit.kind == "t" else 1
        cursor.execute(
            f"INSERT INTO {table} (limit_key, member, weight, expires_ms) "  # noqa: S608
            "VALUES (%s, %s, %s, %s)",
            [limit.key, member, weight, now + limit.span_ms],
        )

    def _maybe_purge(self, cursor: Any, table: str, now: int) -> None:
        """Drop every expired row now and then (keys that went quiet)."""
        if now < self._next_purge:
            return
        self._next_purge = now + _PURGE_EVERY_MS
        cursor.execute(f"DELETE FROM {table} WHERE expires_ms <= %s", [now])  # noqa: S608

    # -- peek --------------------------------------------------------------------

    def peek(self, limits: list[Limit]) -> list[tuple[int, int]]:
        """Return (used, ms until it frees) per limit, reading only live rows."""
        table = self._table()
        out: list[tuple[int, int]] = []
        with connection.cursor() as cursor:
            now = self._now_ms(cursor)
            for limit in limits:
                if limit.kind == "b":
                    cursor.execute(
                        f"SELECT weight, expires_ms FROM {table} "  # noqa: S608
                        "WHERE limit_key = %s AND member = '' AND expires_ms > %s",
                        [limit.key, now],
                    )
                    row = cursor.fetchone()
                    if row is None:
                        out.append((limit.initial() if limit.initial else 0, 0))
                    else:
                        out.append((int(row[0]), int(row[1]) - now))
                    continue
                cursor.execute(
                    f"SELECT count(*), coalesce(sum(weight), 0), min(expires_ms) "  # noqa: S608
                    f"FROM {table} WHERE limit_key = %s AND member <> '' AND expires_ms > %s",
                    [limit.key, now],
                )
                count, weight, first = cursor.fetchone()
                used = int(weight) if limit.kind == "t" else int(count)
                reset = int(first) - now if first is not None and limit.kind != "c" else 0
                out.append((used, reset))
        return out

    # -- settle ------------------------------------------------------------------

    def settle(self, limits: list[Limit], member: str, actual: dict[str, int]) -> None:
        """Replace reservations with real usage; release or renew leases.

        Each statement changes one row atomically (``weight = weight + d``),
        so no lock is needed. Never raises: a settle that fails leaves the
        reservation to age out of its window and the lease to expire.
        """
        table = self._table()
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                now = self._now_ms(cursor)
                for limit in limits:
                    self._settle_one(cursor, table, limit, member, actual, now)
        except Exception:
            logger.warning("limiter: settling on the database failed", exc_info=True)

    @staticmethod
    def _settle_one(
        cursor: Any, table: str, limit: Limit, member: str, actual: dict[str, int], now: int
    ) -> None:
        if limit.kind == "t":
            tokens = actual.get("tokens", limit.cost)
            if tokens > 0:
                cursor.execute(
                    f"UPDATE {table} SET weight = %s WHERE limit_key = %s AND member = %s",  # noqa: S608
                    [tokens, limit.key, member],
                )
            else:
                cursor.execute(
                    f"DELETE FROM {table} WHERE limit_key = %s AND member = %s",  # noqa: S608
                    [limit.key, member],
                )
        elif limit.kind == "c":
            if actual.get("renew"):
                cursor.execute(
                    f"UPDATE {table} SET expires_ms = %s "  # noqa: S608
                    "WHERE limit_key = %s AND member = %s",
                    [now + limit.span_ms, limit.key, member],
                )
            else:
                cursor.execute(
                    f"DELETE FROM {table} WHERE limit_key = %s AND member = %s",  # noqa: S608
                    [limit.key, member],
                )
        elif limit.kind == "b":
            delta = actual.get("cost", limit.cost) - limit.cost
            if delta:
                cursor.execute(
                    f"UPDATE {table} SET weight = weight + %s "  # noqa: S608
                    "WHERE limit_key = %s AND member = ''",
                    [delta, limit.key],
                )

    def clear(self) -> None:
        """Delete every row (tests)."""
        LimiterEntry.objects.all().delete()
        self._next_purge = 0.0
