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

Without Redis (zero-config) or while Redis is unreachable, the same
algorithms run in-process (:class:`LocalLimiter`): rate limits fail open to
a per-process share of each limit; budgets keep being enforced from the
in-process view, and only refuse once the hard cap would be crossed by more
than ``XROUTER_BUDGET_FAIL_OPEN_MARGIN``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from bisect import insort
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

WINDOW_MS = 60_000

# KEYS and ARGV are flat lists: each limit contributes its keys and a fixed
# number of arguments. Kinds: r = requests log, t = tokens log (zset + sum),
# c = concurrency leases, b = budget counter.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local member = ARGV[1]
local n = tonumber(ARGV[2])
local argi = 3
local keyi = 1
local specs = {}
for i = 1, n do
  local kind = ARGV[argi]
  local limit = tonumber(ARGV[argi + 1])
  local cost = tonumber(ARGV[argi + 2])
  local span = tonumber(ARGV[argi + 3])
  local init = ARGV[argi + 4]
  argi = argi + 5
  local spec = {kind = kind, limit = limit, cost = cost, span = span, key = KEYS[keyi]}
  keyi = keyi + 1
  if kind == 't' then spec.sum = KEYS[keyi]; keyi = keyi + 1 end
  local used = 0
  local reset = 0
  if kind == 'r' then
    redis.call('ZREMRANGEBYSCORE', spec.key, '-inf', now - span)
    used = redis.call('ZCARD', spec.key)
    local oldest = redis.call('ZRANGE', spec.key, 0, 0, 'WITHSCORES')
    if oldest[2] then reset = tonumber(oldest[2]) + span - now end
    if used + cost > limit and used >= 1 then
      local idx = used + cost - limit - 1
      local entry = redis.call('ZRANGE', spec.key, idx, idx, 'WITHSCORES')
      spec.retry = tonumber(entry[2]) + span - now
    end
  elseif kind == 't' then
    local expired = redis.call('ZRANGEBYSCORE', spec.key, '-inf', now - span)
    if #expired > 0 then
      local freed = 0
      for _, m in ipairs(expired) do
        freed = freed + tonumber(string.match(m, ':(%d+)$'))
      end
      redis.call('DECRBY', spec.sum, freed)
      redis.call('ZREMRANGEBYSCORE', spec.key, '-inf', now - span)
    end
    used = tonumber(redis.call('GET', spec.sum) or '0')
    local oldest = redis.call('ZRANGE', spec.key, 0, 0, 'WITHSCORES')
    if oldest[2] then reset = tonumber(oldest[2]) + span - now end
    if used + cost > limit then
      local need = used + cost - limit
      local freed = 0
      local entries = redis.call('ZRANGE', spec.key, 0, -1, 'WITHSCORES')
      spec.retry = span
      for j = 1, #entries, 2 do
        freed = freed + tonumber(string.match(entries[j], ':(%d+)$'))
        if freed >= need then spec.retry = tonumber(entries[j + 1]) + span - now; break end
      end
    end
  elseif kind == 'c' then
    redis.call('ZREMRANGEBYSCORE', spec.key, '-inf', now)
    used = redis.call('ZCARD', spec.key)
    if used + cost > limit then spec.retry = 1000 end
  elseif kind == 'b' then
    local current = redis.call('GET', spec.key)
    if not current then
      if init == '' then return {-1, i} end
      redis.call('SET', spec.key, init, 'PX', span, 'NX')
      current = redis.call('GET', spec.key)
    end
    used = tonumber(current)
    reset = redis.call('PTTL', spec.key)
    if used + cost > limit then spec.retry = reset end
  end
  spec.used = used
  spec.reset = reset
  specs[i] = spec
  if spec.retry then
    return {0, i, math.max(spec.retry, 1), used, reset}
  end
end
local out = {1, 0, 0}
for i = 1, n do
  local spec = specs[i]
  if spec.kind == 'r' then
    redis.call('ZADD', spec.key, now, member)
    redis.call('PEXPIRE', spec.key, spec.span)
    if spec.reset == 0 then spec.reset = spec.span end
  elseif spec.kind == 't' then
    redis.call('ZADD', spec.key, now, member .. ':' .. spec.cost)
    redis.call('INCRBY', spec.sum, spec.cost)
    redis.call('PEXPIRE', spec.key, spec.span)
    redis.call('PEXPIRE', spec.sum, spec.span)
    if spec.reset == 0 then spec.reset = spec.span end
  elseif spec.kind == 'c' then
    redis.call('ZADD', spec.key, now + spec.span, member)
    redis.call('PEXPIRE', spec.key, spec.span)
  elseif spec.kind == 'b' then
    redis.call('INCRBY', spec.key, spec.cost)
  end
  table.insert(out, spec.limit - spec.used - spec.cost)
  table.insert(out, spec.reset)
end
return out
"""

# Replace reservations with what was used; release leases; renew leases.
_SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local member = ARGV[1]
local n = tonumber(ARGV[2])
local argi = 3
local keyi = 1
for i = 1, n do
  local kind = ARGV[argi]
  local reserved = tonumber(ARGV[argi + 1])
  local actual = tonumber(ARGV[argi + 2])
  local span = tonumber(ARGV[argi + 3])
  argi = argi + 4
  local key = KEYS[keyi]
  keyi = keyi + 1
  if kind == 't' then
    local sum = KEYS[keyi]
    keyi = keyi + 1
    local old = member .. ':' .. reserved
    local score = redis.call('ZSCORE', key, old)
    if score then
      redis.call('ZREM', key, old)
      if actual > 0 then redis.call('ZADD', key, score, member .. ':' .. actual) end
      redis.call('INCRBY', sum, actual - reserved)
    end
  elseif kind == 'c' then
    if actual < 0 then
      -- The key must outlive the renewed lease, the latest of them all.
      if redis.call('ZADD', key, 'XX', 'CH', now + span, member) == 1 then
        redis.call('PEXPIRE', key, span)
      end
    else
      redis.call('ZREM', key, member)
    end
  elseif kind == 'b' then
    if redis.call('EXISTS', key) == 1 then redis.call('INCRBY', key, actual - reserved) end
  end
end
return 1
"""


class LimitCode:
    REQUESTS = "rate_limit_requests"
    TOKENS = "rate_limit_tokens"
    CONCURRENCY = "concurrency_limit"
    BUDGET = "insufficient_budget"


_CODES = {
    "r": LimitCode.REQUESTS,
    "t": LimitCode.TOKENS,
    "c": LimitCode.CONCURRENCY,
    "b": LimitCode.BUDGET,
}


@dataclass(slots=True)
class Limit:
    """One limit that applies to a request.

    ``scope`` names whose limit it is ("key", "team", "key-model"),
    ``key`` is the Redis key (hash-tagged by team), ``cost`` what this
    request takes (1 request, estimated tokens, 1 slot, micro-roubles),
    ``span_ms`` the window, lease TTL or budget period left.
    """

    kind: str
    scope: str
    key: str
    limit: int
    cost: int
    span_ms: int
    # Budgets: a function returning micro-roubles already spent this period,
    # read from the database only when Redis lacks the counter.
    initial: Callable[[], int] | None = None

    @property
    def code(self) -> str:
        return _CODES[self.kind]


@dataclass(slots=True)
class Decision:
    allowed: bool
    member: str
    limits: list[Limit]
    failed: Limit | None = None
    retry_after_ms: int = 0
    # Per limit (same order): remaining after this request, ms until reset.
    remaining: list[int] = field(default_factory=list)
    reset_ms: list[int] = field(default_factory=list)
    # Which engine decided: "redis" or "local" (Redis absent or down).
    engine: str = "redis"

    def headers(self) -> dict[str, str]:
        """Return OpenAI's x-ratelimit-* headers for the tightest limits."""
        out: dict[str, str] = {}
        for kind, suffix in (("r", "requests"), ("t", "tokens")):
            best: tuple[int, int, int] | None = None
            for i, limit in enumerate(self.limits):
                if limit.kind != kind or i >= len(self.remaining):
                    continue
                candidate = (max(self.remaining[i], 0), limit.limit, self.reset_ms[i])
                if best is None or candidate[0] < best[0]:
                    best = candidate
            if best is not None:
                out[f"x-ratelimit-limit-{suffix}"] = str(best[1])
                out[f"x-ratelimit-remaining-{suffix}"] = str(best[0])
                out[f"x-ratelimit-reset-{suffix}"] = format_duration(best[2])
        return out


def format_duration(ms: int) -> str:
    """Format milliseconds the way OpenAI's reset headers do ("1s", "6m0s", "20ms")."""
    ms = max(int(ms), 0)
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}m{rest}s"


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
                    )
                remaining.append(cap - used - limit.cost)
                resets.append(int(reset))
            for limit in limits:
                self._commit(limit, now, member)
            return Decision(
                True, member, limits, remaining=remaining, reset_ms=resets, engine="local"
            )

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
        self._down_until = 0.0
        self.fail_open_events = 0
        self._batcher: _SettleBatcher | None = None
        self._acquirer: _AcquireBatcher | None = None

    def _redis(self) -> Any:
        if self._client is None:
            import redis

            url = settings.XROUTER_LIMITER_REDIS_URL
            timeout = settings.XROUTER_LIMITER_TIMEOUT
            options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
            if settings.XROUTER_REDIS_CLUSTER:
                from redis.cluster import RedisCluster

                client: Any = RedisCluster.from_url(url, **options)
            else:
                client = redis.Redis.from_url(url, retry=None, **options)
            self._acquire_script = client.register_script(_ACQUIRE)
            self._settle_script = client.register_script(_SETTLE)
            self._client = client
        return self._client

    @property
    def uses_redis(self) -> bool:
        return bool(settings.XROUTER_LIMITER_REDIS_URL) and time.monotonic() >= self._down_until

    def _redis_failed(self, exc: BaseException) -> None:
        self.fail_open_events += 1
        self._down_until = time.monotonic() + settings.XROUTER_LIMITER_RETRY_SECONDS
        logger.warning(
            "limiter: Redis unavailable, using the in-process limiter",
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
        share = settings.XROUTER_LIMITER_FALLBACK_SHARE if settings.XROUTER_LIMITER_REDIS_URL else 1
        return self.local.acquire(limits, member, share=share)

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
                    self._acquirer = _AcquireBatcher(self)
                result = self._acquirer.call(keys, args)
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
                return Decision(False, member, limits, failed=failed, retry_after_ms=int(result[2]))
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
            if self._batcher is None or self._batcher.pid != os.getpid():
                self._batcher = _SettleBatcher(self)
            self._batcher.submit(keys, args)
            return
        try:
            self._settle_script(keys=keys, args=args, client=self._redis())
        except Exception as exc:
            # Reservations then simply age out of their window; leases
            # expire with their TTL.
            self._redis_failed(exc)

    def _settle_many(self, batch: list[tuple[list[str], list[Any]]]) -> None:
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


class _AcquireBatcher:
    """Pipeline the acquire scripts of concurrent requests; each waits for its own.

    A writer thread (a greenlet under gevent) takes every queued call, sends
    them in one pipeline and hands each caller its reply. At low load a
    batch is one call and costs a plain round trip.
    """

    def __init__(self, owner: Limiter, timeout: float = 1.0) -> None:
        self.pid = os.getpid()
        self._owner = owner
        self._timeout = timeout
        self._cond = threading.Condition()
        self._queue: list[tuple[list[str], list[Any], _Reply]] = []
        self._thread = threading.Thread(target=self._run, name="limiter-acquire", daemon=True)
        self._thread.start()

    def call(self, keys: list[str], args: list[Any]) -> Any:
        reply = _Reply()
        with self._cond:
            self._queue.append((keys, args, reply))
            self._cond.notify()
        if not reply.done.wait(self._timeout):
            raise TimeoutError("the limiter's Redis did not answer in time")
        if isinstance(reply.value, Exception):
            raise reply.value
        return reply.value

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                batch, self._queue = self._queue, []
            try:
                values: list[Any] = self._owner._evalsha_many(
                    self._owner._acquire_script, [(keys, args) for keys, args, _r in batch]
                )
            except Exception as exc:  # the whole batch failed: each caller falls back
                values = [exc] * len(batch)
            for (_keys, _args, reply), value in zip(batch, values, strict=True):
                reply.value = value
                reply.done.set()


class _Reply:
    __slots__ = ("done", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None


class _SettleBatcher:
    """Send queued settles in one pipeline, from a background thread.

    A settle happens after the response; batching them turns one Redis
    round trip per request into one per batch under load.
    """

    def __init__(self, owner: Limiter) -> None:
        self.pid = os.getpid()
        self._owner = owner
        self._cond = threading.Condition()
        self._queue: list[tuple[list[str], list[Any]]] = []
        self._thread = threading.Thread(target=self._run, name="limiter-settle", daemon=True)
        self._thread.start()

    def submit(self, keys: list[str], args: list[Any]) -> None:
        with self._cond:
            self._queue.append((keys, args))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                batch, self._queue = self._queue, []
            self._owner._settle_many(batch)


limiter = Limiter()
