"""The limiter's algorithms in process memory: zero-config and Redis outages.

Same semantics as the Lua scripts of :mod:`routing.limits.limiter`, on
``time.monotonic()`` instead of Redis' clock.
"""

from __future__ import annotations

import threading
import time
from bisect import insort
from collections import defaultdict

from django.conf import settings

from routing.limits.types import WINDOW_MS, Decision, Limit


class LocalLimiter:
    """The same algorithms in process memory, for zero-config and Redis outages.

    ``share`` divides every rate limit (not budgets), so N workers that all
    fell back hold roughly the global limit together.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: dict[str, list[tuple[float, str, int]]] = defaultdict(list)
        self._leases: dict[str, dict[str, float]] = defaultdict(dict)
        self._counters: dict[str, tuple[float, int]] = {}

    def acquire(self, limits: list[Limit], member: str, share: int = 1) -> Decision:
        now = time.monotonic() * 1000
        with self._lock:
            remaining, resets = [], []
            for limit in limits:
                cap = limit.limit if limit.kind == "b" else max(1, limit.limit // share)
                used, reset, retry = self._usage(limit, now, cap)
                if retry is not None:
                    return Decision(
                        False,
                        member,
                        limits,
                        failed=limit,
                        retry_after_ms=max(int(retry), 1),
                        engine="local",
                        used=used,
                    )
                remaining.append(cap - used - limit.cost)
                resets.append(int(reset))
            for limit in limits:
                self._commit(limit, now, member)
            return Decision(
                True, member, limits, remaining=remaining, reset_ms=resets, engine="local"
            )

    def peek(self, limits: list[Limit]) -> list[tuple[int, int]]:
        """Return (used, ms until it frees) per limit; changes nothing but expiry."""
        now = time.monotonic() * 1000
        out: list[tuple[int, int]] = []
        with self._lock:
            for limit in limits:
                if limit.kind in ("r", "t"):
                    live = [e for e in self._logs.get(limit.key, []) if e[0] > now - limit.span_ms]
                    used = len(live) if limit.kind == "r" else sum(e[2] for e in live)
                    reset = live[0][0] + limit.span_ms - now if live else 0
                    out.append((used, int(reset)))
                elif limit.kind == "c":
                    leases = self._leases.get(limit.key, {})
                    out.append((sum(1 for expiry in leases.values() if expiry > now), 0))
                else:
                    expires, spent = self._counters.get(limit.key, (0.0, -1))
                    if spent < 0 or expires <= now:
                        out.append((limit.initial() if limit.initial else 0, 0))
                    else:
                        out.append((spent, int(expires - now)))
        return out

    def _usage(self, limit: Limit, now: float, cap: int) -> tuple[int, float, float | None]:
        if limit.kind in ("r", "t"):
            log = self._logs[limit.key]
            while log and log[0][0] <= now - limit.span_ms:
                log.pop(0)
            used = len(log) if limit.kind == "r" else sum(entry[2] for entry in log)
            reset = log[0][0] + limit.span_ms - now if log else 0
            if used + limit.cost > cap:
                need, freed = used + limit.cost - cap, 0
                for ts, _m, weight in log:
                    freed += 1 if limit.kind == "r" else weight
                    if freed >= need:
                        return used, reset, ts + limit.span_ms - now
                return used, reset, limit.span_ms
            return used, reset, None
        if limit.kind == "c":
            leases = self._leases[limit.key]
            for member, expiry in list(leases.items()):
                if expiry <= now:
                    del leases[member]
            return len(leases), 0, 1000 if len(leases) + limit.cost > cap else None
        expires, spent = self._counters.get(limit.key, (0.0, -1))
        if spent < 0 or expires <= now:
            spent = limit.initial() if limit.initial else 0
            self._counters[limit.key] = (now + limit.span_ms, spent)
            expires = now + limit.span_ms
        reset = expires - now
        # Locally a budget may overshoot by the configured margin at most.
        margin = settings.XROUTER_BUDGET_FAIL_OPEN_MARGIN
        if spent + limit.cost > cap * (1 + margin):
            return spent, reset, reset
        return spent, reset, None

    def _commit(self, limit: Limit, now: float, member: str) -> None:
        if limit.kind in ("r", "t"):
            insort(self._logs[limit.key], (now, member, limit.cost))
        elif limit.kind == "c":
            self._leases[limit.key][member] = now + limit.span_ms
        else:
            expires, spent = self._counters[limit.key]
            self._counters[limit.key] = (expires, spent + limit.cost)

    def settle(self, limits: list[Limit], member: str, actual: dict[str, int]) -> None:
        now = time.monotonic() * 1000
        with self._lock:
            for limit in limits:
                if limit.kind == "t":
                    log = self._logs[limit.key]
                    for i, (ts, m, weight) in enumerate(log):
                        if m == member:
                            log[i] = (ts, m, actual.get("tokens", weight))
                            break
                elif limit.kind == "c":
                    if actual.get("renew"):
                        if member in self._leases[limit.key]:
                            self._leases[limit.key][member] = now + limit.span_ms
                    else:
                        self._leases[limit.key].pop(member, None)
                elif limit.kind == "b" and limit.key in self._counters:
                    expires, spent = self._counters[limit.key]
                    self._counters[limit.key] = (
                        expires,
                        spent + actual.get("cost", limit.cost) - limit.cost,
                    )

    def requests_in_window(self, key: str) -> int:
        now = time.monotonic() * 1000
        with self._lock:
            return sum(1 for entry in self._logs.get(key, ()) if entry[0] > now - WINDOW_MS)

    def clear(self) -> None:
        with self._lock:
            self._logs.clear()
            self._leases.clear()
            self._counters.clear()
