"""Admission: reserve a request's limits before any upstream is called.

The gateway asks :func:`admit` once per request with the route it will try
first; a refusal raises :class:`~xrouter_site.errors.RateLimited` (429) or
:class:`~xrouter_site.errors.BudgetExhausted` (402) with ``Retry-After``.
The real usage replaces the estimate when the call settles. A budget that
cannot cover a chat request's reservation caps its ``max_tokens`` instead
of refusing it, down to ``XROUTER_BUDGET_MIN_COMPLETION_TOKENS``.
"""

from __future__ import annotations

import logging
import math
from decimal import Decimal
from typing import NoReturn

from django.conf import settings

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
    principal: KeyPrincipal,
    route: ModelRoute,
    tokens: int,
    completion_tokens: int,
    *,
    cappable: bool = False,
) -> tuple[Decision, int]:
    """Reserve the request's limits; return the decision and its completion tokens.

    ``completion_tokens`` is what the request reserves for its answer. When
    ``cappable`` and a budget cannot cover that but can cover the prompt and
    at least ``XROUTER_BUDGET_MIN_COMPLETION_TOKENS``, the reservation is
    retried with the completion tokens the budget affords, and that smaller
    number is returned (the caller sends it upstream as ``max_tokens``).

    Raises :class:`RateLimited` or :class:`BudgetExhausted` when a limit
    refuses; nothing is reserved then.
    """
    for _attempt in range(3):
        estimated_cost = cost_rub(
            route.prompt_price,
            route.completion_price,
            Usage(prompt_tokens=tokens, completion_tokens=completion_tokens),
        )
        plan = limit_plan(principal, route, tokens + completion_tokens, to_micro(estimated_cost))
        decision = limiter.acquire(plan)
        if decision.allowed:
            return decision, completion_tokens
        failed = decision.failed
        assert failed is not None
        if failed.code == ErrorCode.INSUFFICIENT_BUDGET and cappable and decision.used >= 0:
            affordable = affordable_completion(route, tokens, failed.limit - decision.used)
            if settings.XROUTER_BUDGET_MIN_COMPLETION_TOKENS <= affordable < completion_tokens:
                completion_tokens = affordable
                continue
        break
    _refuse(decision, route, tokens)


def affordable_completion(route: ModelRoute, prompt_tokens: int, left_micro: int) -> int:
    """Return how many completion tokens ``left_micro`` pays for after the prompt."""
    price = route.completion_price
    if not price or price <= 0:
        return 0
    prompt_micro = to_micro(cost_rub(route.prompt_price, None, Usage(prompt_tokens=prompt_tokens)))
    # Micro-roubles per completion token: price per 1,000 tokens x 1,000.
    count = int((left_micro - prompt_micro) / (price * 1000))
    while count > 0:
        cost = cost_rub(
            route.prompt_price,
            route.completion_price,
            Usage(prompt_tokens=prompt_tokens, completion_tokens=count),
        )
        if to_micro(cost) <= left_micro:
            return count
        count -= 1
    return 0


def _human_duration(ms: int) -> str:
    seconds = max(1, math.ceil(ms / 1000))
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def _refuse(decision: Decision, route: ModelRoute, prompt_tokens: int) -> NoReturn:
    failed = decision.failed
    assert failed is not None
    retry = max(1, math.ceil(decision.retry_after_ms / 1000))
    try:
        metrics.LIMIT_REFUSALS.labels(failed.code, failed.scope).inc()
    except Exception:
        logger.debug("metrics failed", exc_info=True)
    if failed.code == ErrorCode.INSUFFICIENT_BUDGET:
        raise BudgetExhausted(
            _budget_message(decision, failed, route, prompt_tokens),
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


def _budget_message(decision: Decision, failed: Limit, route: ModelRoute, prompt: int) -> str:
    """Say what is true: spent only when nothing is left, else how much is."""
    budget = Decimal(failed.limit) / 1_000_000
    when = _human_duration(decision.retry_after_ms)
    left = failed.limit - decision.used if decision.used >= 0 else None
    if left is None or left <= 0:
        return (
            f"The {failed.scope} budget of {budget:f} RUB is spent for this period; "
            f"it resets in {when}."
        )
    prompt_cost = cost_rub(route.prompt_price, None, Usage(prompt_tokens=prompt))
    return (
        f"The {failed.scope} budget has {Decimal(left) / 1_000_000:f} RUB of "
        f"{budget:f} RUB left for this period (requests in flight included), "
        f"which does not cover this request: its prompt alone is estimated at "
        f"{prompt_cost:f} RUB, plus at least "
        f"{settings.XROUTER_BUDGET_MIN_COMPLETION_TOKENS} completion tokens. "
        f"Send a shorter request, or wait: the budget resets in {when}."
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
