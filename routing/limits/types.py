"""The vocabulary of limits: :class:`Limit`, :class:`Decision` and their codes.

Shared by the Redis limiter, the local limiter, the plan that builds the
limits of a request and the gateway that reads a decision's headers. Kinds:
``r`` requests log, ``t`` tokens log, ``c`` concurrency leases, ``b`` budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from xrouter_site.errors import ErrorCode

WINDOW_MS = 60_000


# The error code a refusal by each kind of limit answers with.
_CODES = {
    "r": ErrorCode.RATE_LIMIT_REQUESTS,
    "t": ErrorCode.RATE_LIMIT_TOKENS,
    "c": ErrorCode.CONCURRENCY_LIMIT,
    "b": ErrorCode.INSUFFICIENT_BUDGET,
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
    def code(self) -> ErrorCode:
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
