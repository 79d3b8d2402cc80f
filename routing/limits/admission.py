"""Admission: reserve a request's limits before any upstream is called.

The gateway asks :func:`admit` once per request with the route it will try
first; a refusal raises :class:`~xrouter_site.errors.RateLimited` (429) or
:class:`~xrouter_site.errors.BudgetExhausted` (402) with ``Retry-After``.
The real usage replaces the estimate when the call settles.
"""

from __future__ import annotations

import logging
import math

from keys.principal import KeyPrincipal
from providers.base import Usage
from routing import metrics
from routing.limits.limiter import limiter
from routing.limits.plan import limit_plan
from routing.limits.types import Decision, Limit
from routing.table import ModelRoute
from routing.usage.pricing import cost_rub, to_micro
from xrouter_site.errors import BudgetExhausted, ErrorCode, RateLimited

logger = logging.getLogger(__name__)


def estimate_prompt_tokens(texts: list[str]) -> int:
    """Estimate tokens before the call: a generous 1 token per 3 characters.

    Only the limiter's reservation uses this; the real count replaces it.
    """
    return sum(math.ceil(len(text) / 3) + 4 for text in texts)


def admit(
    principal: KeyPrincipal, route: ModelRoute, tokens: int, completion_tokens: int
) -> Decision:
    """Reserve the request's limits and return the decision to settle later.

    Raises :class:`RateLimited` or :class:`BudgetExhausted` when a limit
    refuses; nothing is reserved then.
    """
    estimated_cost = cost_rub(
        route.prompt_price,
        route.completion_price,
        Usage(prompt_tokens=tokens, completion_tokens=completion_tokens),
    )
    plan = limit_plan(principal, route, tokens + completion_tokens, to_micro(estimated_cost))
    decision = limiter.acquire(plan)
    if decision.allowed:
        return decision
    failed = decision.failed
    assert failed is not None
    retry = max(1, math.ceil(decision.retry_after_ms / 1000))
    try:
        metrics.LIMIT_REFUSALS.labels(failed.code, failed.scope).inc()
    except Exception:
        logger.debug("metrics failed", exc_info=True)
    if failed.code == ErrorCode.INSUFFICIENT_BUDGET:
        raise BudgetExhausted(
            f"The {failed.scope} budget is spent for this period.",
            headers={"Retry-After": str(retry)},
        )
    what = {
        ErrorCode.RATE_LIMIT_REQUESTS: f"{failed.limit} requests per minute",
        ErrorCode.RATE_LIMIT_TOKENS: f"{failed.limit} tokens per minute",
        ErrorCode.CONCURRENCY_LIMIT: f"{failed.limit} concurrent requests",
    }[failed.code]
    raise RateLimited(
        f"Rate limit reached: the {failed.scope} limit is {what}. Retry in {retry}s.",
        code=failed.code,
        headers={"Retry-After": str(retry), **refusal_headers(failed)},
    )


def refusal_headers(failed: Limit) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*`` headers for a refused per-minute limit."""
    suffix = {"r": "requests", "t": "tokens"}.get(failed.kind)
    if suffix is None:
        return {}
    return {
        f"x-ratelimit-limit-{suffix}": str(failed.limit),
        f"x-ratelimit-remaining-{suffix}": "0",
    }
