"""Rate limits, concurrency caps and budgets, checked in one round trip.

Algorithms, chosen per limit so each has a simple admission invariant:

- **Requests per minute**: a sliding-window log (a sorted set of request
  times). Invariant: at most N admitted in any 60-second window, exactly,
  with no boundary burst. Memory is one entry per admitted request in the
  window, which is fine for per-minute limits.
- **Tokens per minute**: the same log, each entry weighted by its tokens,
  with a running sum beside it. The estimate (prompt + max_tokens) is
  reserved up front and replaced by the real usage afterwards ("settle"), so
  the window holds what was actually used.
- **Concurrent requests**: leases in a sorted set scored by their expiry. A
  stream renews its lease while it runs; a worker that dies leaks nothing
  past the lease TTL.
- **Budgets**: a counter of spent micro-roubles per period (day, week,
  month, or ever), initialised from PostgreSQL (the record: the sum of
  usage costs) when Redis does not have it. The estimated cost is reserved
  and settled like tokens.

All the limits of a request run in ONE Lua script (check all, then commit
all), using Redis' own clock. Every key of a team shares the hash tag
``{t<team id>}`` so the script also runs on Redis Cluster.

Without Redis (zero-config, or PostgreSQL alone) the same algorithms run
on the database every worker shares (:mod:`routing.limits.database`), so
limits and budgets hold exactly across workers there too. While a
configured Redis (or that database) is unreachable, they run in-process
(:class:`LocalLimiter`): rate limits fail open to a per-process share of
each limit; budgets keep being enforced from the in-process view, and only
refuse once the hard cap would be crossed by more than
``XROUTER_BUDGET_FAIL_OPEN_MARGIN``.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings

from routing.limits.database import DatabaseLimiter
from routing.limits.local import LocalLimiter
from routing.limits.types import WINDOW_MS, Decision, Limit
from xrouter_site.batching import GroupCommit
from xrouter_site.state import on_reset

logger = logging.getLogger(__name__)

# One script call: (KEYS, ARGV).
_Call = tuple[list[str], list[Any]]

_LUA = Path(__file__).resolve().parent / "lua"
# KEYS and ARGV are flat lists; see the header of each script.
_ACQUIRE = (_LUA / "acquire.lua").read_text(encoding="utf-8")
_SETTLE = (_LUA / "settle.lua").read_text(encoding="utf-8")
_PEEK = (_LUA / "peek.lua").read_text(encoding="utf-8")


class Limiter:
    """Check-and-consume every limit of a request on Redis, or locally.

    Redis calls use short timeouts; a failure switches this process to the
    local limiter for ``XROUTER_LIMITER_RETRY_SECONDS`` before Redis is
    tried again, so an outage costs at most one timeout per interval.
    """

    def __init__(self) -> None:
        self.local = LocalLimiter()
        self._client: Any = None
        self._acquire_script: Any = None
        self._settle_script: Any = None
        self._peek_script: Any = None
        self._down_until = 0.0
        self.fail_open_events = 0
        # Concurrent requests' scripts share pipelined round trips.
        self._settler: GroupCommit[_Call] | None = None
        self._acquirer: GroupCommit[_Call] | None = None
        # The shared store when no Redis is configured.
        self.database = DatabaseLimiter()

    def _redis(self) -> Any:
        if self._client is None:
            from xrouter_site import redis_connections

            url = settings.XROUTER_LIMITER_REDIS_URL
            timeout = settings.XROUTER_LIMITER_TIMEOUT
            options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
            if settings.XROUTER_REDIS_CLUSTER:
                from redis.cluster import RedisCluster

                client: Any = RedisCluster.from_url(url, **options)
            else:
                # Plain, TLS or redis+sentinel:// (xrouter_site.redis_connections).
                client = redis_connections.client(url, retry=None, **options)
            self._acquire_script = client.register_script(_ACQUIRE)
            self._settle_script = client.register_script(_SETTLE)
            self._peek_script = client.register_script(_PEEK)
            self._client = client
        return self._client

    @property
    def uses_redis(self) -> bool:
        return bool(settings.XROUTER_LIMITER_REDIS_URL) and time.monotonic() >= self._down_until

    def _redis_failed(self, exc: BaseException) -> None:
        self._down_until = time.monotonic() + settings.XROUTER_LIMITER_RETRY_SECONDS
        self._store_failed("Redis", exc)

    def _store_failed(self, store: str, exc: BaseException) -> None:
        self.fail_open_events += 1
        logger.warning(
            f"limiter: {store} unavailable, using the in-process limiter",
            extra={"error": type(exc).__name__},
        )
        try:
            from routing import metrics

            metrics.LIMITER_FAIL_OPEN.inc()
        except Exception:  # metrics must never break a request
            logger.debug("metrics unavailable", exc_info=True)

    def acquire(self, limits: list[Limit]) -> Decision:
        """Admit the request against every limit, or name the one it breaks."""
        member = uuid.uuid4().hex
        if not limits:
            return Decision(True, member, limits)
        if self.uses_redis:
            try:
                return self._acquire_redis(limits, member)
            except Exception as exc:
                self._redis_failed(exc)
        elif not settings.XROUTER_LIMITER_REDIS_URL:
            # No Redis configured: the database is what every worker shares,
            # so the limits hold exactly across them (routing.limits.database).
            try:
                return self.database.acquire(limits, member)
            except Exception as exc:
                self._store_failed("database", exc)
        share = settings.XROUTER_LIMITER_FALLBACK_SHARE
        return self.local.acquire(limits, member, share=share)

    def peek(self, limits: list[Limit]) -> tuple[list[tuple[int, int]], str]:
        """Return what each limit has used and ms until it frees, and the engine.

        Reads the same store :meth:`acquire` would decide on (Redis, the
        database, or this process while the configured one is down) and
        changes nothing. A budget counter that is not there yet reads the
        record (its ``initial``), exactly as the next request would start.
        """
        if not limits:
            return [], "none"
        if self.uses_redis:
            try:
                return self._peek_redis(limits), "redis"
            except Exception as exc:
                self._redis_failed(exc)
        elif not settings.XROUTER_LIMITER_REDIS_URL:
            try:
                return self.database.peek(limits), "database"
            except Exception as exc:
                self._store_failed("database", exc)
        return self.local.peek(limits), "local"

    def _peek_redis(self, limits: list[Limit]) -> list[tuple[int, int]]:
        client = self._redis()
        args: list[Any] = [len(limits)]
        for limit in limits:
            args += [limit.kind, limit.span_ms]
        result = self._peek_script(keys=[lt.key for lt in limits], args=args, client=client)
        values = [int(v) for v in result]
        out: list[tuple[int, int]] = []
        for i, limit in enumerate(limits):
            used, reset = values[2 * i], values[2 * i + 1]
            if used < 0:
                used = limit.initial() if limit.initial else 0
            out.append((used, reset))
        return out

    def _args(
        self, limits: list[Limit], member: str, init: dict[int, int]
    ) -> tuple[list[str], list[Any]]:
        keys: list[str] = []
        args: list[Any] = [member, len(limits)]
        for i, limit in enumerate(limits):
            keys.append(limit.key)
            if limit.kind == "t":
                keys.append(limit.key + ":sum")
            args += [limit.kind, limit.limit, limit.cost, limit.span_ms, init.get(i, "")]
        return keys, args

    def _acquire_redis(self, limits: list[Limit], member: str) -> Decision:
        client = self._redis()
        init: dict[int, int] = {}
        for _attempt in range(len(limits) + 1):
            keys, args = self._args(limits, member, init)
            if settings.XROUTER_LIMITER_BATCH and not settings.XROUTER_REDIS_CLUSTER:
                # Concurrent requests' checks share one pipelined round trip;
                # each still waits for its own answer before going upstream.
                if self._acquirer is None or self._acquirer.pid != os.getpid():
                    self._acquirer = GroupCommit(
                        "limiter-acquire",
                        self._acquire_many,
                        timeout=1.0,
                        timeout_message="the limiter's Redis did not answer in time",
                    )
                result = self._acquirer.submit((keys, args))
                if isinstance(result, Exception):
                    raise result
            else:
                result = self._acquire_script(keys=keys, args=args, client=client)
            status = int(result[0])
            if status == -1:  # a budget counter needs its starting value
                index = int(result[1]) - 1
                limit = limits[index]
                init[index] = limit.initial() if limit.initial else 0
                continue
            if status == 0:
                failed = limits[int(result[1]) - 1]
                return Decision(
                    False,
                    member,
                    limits,
                    failed=failed,
                    retry_after_ms=int(result[2]),
                    used=int(result[3]),
                )
            values = [int(v) for v in result[3:]]
            return Decision(True, member, limits, remaining=values[0::2], reset_ms=values[1::2])
        raise RuntimeError("limiter: budget initialisation did not converge")

    def settle(
        self,
        decision: Decision,
        *,
        tokens: int | None = None,
        cost: int | None = None,
        renew: bool = False,
    ) -> None:
        """Replace reservations with real usage and release (or renew) leases."""
        limits = [limit for limit in decision.limits if limit.kind in "tcb"]
        if not decision.allowed or not limits:
            return
        actual = {"renew": int(renew)}
        if tokens is not None:
            actual["tokens"] = tokens
        if cost is not None:
            actual["cost"] = cost
        if decision.engine == "local":
            self.local.settle(limits, decision.member, actual)
            return
        if decision.engine == "database":
            self.database.settle(limits, decision.member, actual)
            return
        keys: list[str] = []
        args: list[Any] = [decision.member, len(limits)]
        for limit in limits:
            keys.append(limit.key)
            if limit.kind == "t":
                keys.append(limit.key + ":sum")
            if limit.kind == "t":
                value = tokens if tokens is not None else limit.cost
            elif limit.kind == "b":
                value = cost if cost is not None else limit.cost
            else:
                value = -1 if renew else 0
            args += [limit.kind, limit.cost, value, limit.span_ms]
        if settings.XROUTER_LIMITER_ASYNC_SETTLE and not settings.XROUTER_REDIS_CLUSTER:
            # Nobody waits for a settle: hand it to the batcher, which sends
            # everything queued in one pipeline.
            if self._settler is None or self._settler.pid != os.getpid():
                self._settler = GroupCommit("limiter-settle", self._settle_many)
            self._settler.send((keys, args))
            return
        try:
            self._settle_script(keys=keys, args=args, client=self._redis())
        except Exception as exc:
            # Reservations then simply age out of their window; leases
            # expire with their TTL.
            self._redis_failed(exc)

    def _acquire_many(self, calls: list[_Call]) -> list[Any]:
        return self._evalsha_many(self._acquire_script, calls)

    def _settle_many(self, batch: list[_Call]) -> None:
        try:
            for result in self._evalsha_many(self._settle_script, batch):
                if isinstance(result, Exception):
                    raise result
        except Exception as exc:
            self._redis_failed(exc)

    def _evalsha_many(self, script: Any, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """Run ``script`` once per call in one pipeline; return each reply or error.

        Plain EVALSHA, not redis-py's pipeline script support, which checks
        SCRIPT EXISTS before every pipeline (a second round trip); a
        NOSCRIPT reply (Redis restarted) loads the script and retries those.
        """
        client = self._redis()

        def send(todo: list[int]) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for i in todo:
                keys, args = calls[i]
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            return list(pipe.execute(raise_on_error=False))

        try:
            results = send(list(range(len(calls))))
        except Exception as exc:
            if not _is_noscript(exc):
                raise
            results = [exc] * len(calls)
        missing = [i for i, r in enumerate(results) if _is_noscript(r)]
        if missing:
            client.script_load(script.script)
            for i, result in zip(missing, send(missing), strict=True):
                results[i] = result
        return results

    def requests_in_window(self, key: str) -> int:
        """How many requests a requests-per-minute log holds now (read only).

        From Redis when it is in use, else this process's own log (which is
        all a zero-config worker enforces).
        """
        if self.uses_redis:
            try:
                client = self._redis()
                seconds, micros = client.time()
                now = int(seconds) * 1000 + int(micros) // 1000
                return int(client.zcount(key, f"({now - WINDOW_MS}", "+inf"))
            except Exception as exc:
                self._redis_failed(exc)
        return self.local.requests_in_window(key)

    def reset(self) -> None:
        """Forget state and connections (tests)."""
        self.local.clear()
        self._down_until = 0.0
        self.fail_open_events = 0
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                logger.debug("closing the limiter client failed", exc_info=True)
        self._client = None


def _is_noscript(result: Any) -> bool:
    from redis.exceptions import NoScriptError

    return isinstance(result, NoScriptError)


limiter = Limiter()


on_reset("routing.limits.limiter", limiter.reset)
