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
from routing.limits.prompt_size import PromptSize, estimate_prompt_tokens
from routing.limits.types import Decision, Limit
from routing.table import ModelRoute
from routing.usage.pricing import cost_rub, to_micro
from xrouter_site.errors import BudgetExhausted, ErrorCode, InvalidRequest, RateLimited

__all__ = [
    "PromptSize",
    "admit",
    "affordable_completion",
    "check_context",
    "estimate_prompt_tokens",
    "refusal_headers",
]

logger = logging.getLogger(__name__)


def admit(
    principal: KeyPrincipal,
    route: ModelRoute,
    prompt: int | PromptSize,
    completion_tokens: int,
    *,
    cappable: bool = False,
) -> tuple[Decision, int]:
    """Reserve the request's limits; return the decision and its completion tokens.

    ``prompt`` is the prompt's :class:`PromptSize` (or a bare estimate).
    When a token or budget limit's threshold falls inside the estimate's
    error bound, the estimate cannot decide: the provider's count is asked
    for (``PromptSize.count``) and decides, whichever way, both when the
    estimate was refused (the real count may fit) and when it was admitted
    (the real count may not). ``completion_tokens`` is what the request
    reserves for its answer. When ``cappable`` and a budget cannot cover
    that but can cover the prompt and at least
    ``XROUTER_BUDGET_MIN_COMPLETION_TOKENS``, the reservation is retried
    with the completion tokens the budget affords, and that smaller number
    is returned (the caller sends it upstream as ``max_tokens``).

    Raises :class:`RateLimited` or :class:`BudgetExhausted` when a limit
    refuses; nothing is reserved then.
    """
    size = prompt if isinstance(prompt, PromptSize) else PromptSize(prompt)
    for _attempt in range(4):
        tokens = size.tokens
        estimated_cost = cost_rub(
            route.prompt_price,
            route.completion_price,
            Usage(prompt_tokens=tokens, completion_tokens=completion_tokens),
        )
        plan = limit_plan(principal, route, tokens + completion_tokens, to_micro(estimated_cost))
        decision = limiter.acquire(plan)
        if decision.allowed:
            broken = _broken_by_real_count(decision, size, route, completion_tokens)
            if broken is None:
                return decision, completion_tokens
            # The real count does not fit what the estimate was given:
            # release the reservation and refuse as the limiter would have.
            limiter.settle(decision, tokens=0, cost=0)
            decision = broken
        failed = decision.failed
        assert failed is not None
        if size.real is None and _undecided(decision, size, route, completion_tokens):
            # Refused by the estimate, but the real count may fit.
            size.count()
            if size.tokens < tokens:
                continue
        if failed.code == ErrorCode.INSUFFICIENT_BUDGET and cappable and decision.used >= 0:
            affordable = affordable_completion(route, size.tokens, failed.limit - decision.used)
            if settings.XROUTER_BUDGET_MIN_COMPLETION_TOKENS <= affordable < completion_tokens:
                completion_tokens = affordable
                continue
        break
    _refuse(decision, route, size.tokens)


def check_context(route: ModelRoute, size: PromptSize, completion: int | None, param: str) -> None:
    """Refuse (400) a prompt that, with ``completion``, cannot fit the model's context.

    The estimate decides when it can; inside its error bound the provider's
    count does (and the estimate again if the provider cannot count).
    """
    context = route.context_length
    if not context:
        return
    threshold = context - (completion or 0)
    if not size.decides(threshold):
        size.count()
    if size.tokens <= threshold:
        return
    counted = "" if size.real is not None else "an estimated "
    asked = f", {completion} in the completion" if completion else ""
    raise InvalidRequest(
        f"This model's maximum context length is {context} tokens. However, you requested "
        f"{size.tokens + (completion or 0)} tokens ({counted}{size.tokens} in the messages"
        f"{asked}). Please reduce the length of the messages or the '{param}'.",
        param="messages",
        code=ErrorCode.CONTEXT_LENGTH_EXCEEDED,
    )


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


def _prompt_threshold(limit: Limit, left: int, route: ModelRoute, completion: int) -> int | None:
    """Return the most prompt tokens that ``left`` of ``limit`` admits, or None.

    ``None``: the prompt's size does not matter to this limit (requests,
    concurrency, a budget with no prompt price).
    """
    if limit.kind == "t":
        return left - completion
    if limit.kind != "b" or not route.prompt_price or route.prompt_price <= 0:
        return None
    completion_micro = to_micro(cost_rub(None, route.completion_price, Usage(0, completion)))
    # Micro-roubles per prompt token: price per 1,000 tokens x 1,000.
    return math.floor((left - completion_micro) / (route.prompt_price * 1000))


def _undecided(decision: Decision, size: PromptSize, route: ModelRoute, completion: int) -> bool:
    """Whether a refusal's threshold lies inside the estimate's error bound."""
    failed = decision.failed
    assert failed is not None
    if failed.kind not in "tb":
        return False
    if decision.used < 0:
        return True  # the engine did not say what was used: ask
    threshold = _prompt_threshold(failed, failed.limit - decision.used, route, completion)
    return threshold is not None and not size.decides(threshold)


def _broken_by_real_count(
    decision: Decision, size: PromptSize, route: ModelRoute, completion: int
) -> Decision | None:
    """Return a refusal if the prompt's real count breaks an admitted limit.

    The provider is asked only when some token or budget limit has less
    room left than the estimate's error could need.
    """
    if size.real is not None:
        return None
    room: list[tuple[int, Limit, int]] = []
    for i, limit in enumerate(decision.limits):
        if limit.kind not in "tb" or i >= len(decision.remaining):
            continue
        threshold = _prompt_threshold(limit, limit.cost + decision.remaining[i], route, completion)
        if threshold is not None:
            room.append((i, limit, threshold))
    if all(size.decides(threshold) for _i, _limit, threshold in room):
        return None
    real = size.count()
    if real is None:
        return None
    for i, limit, threshold in room:
        if real > threshold:
            return Decision(
                False,
                decision.member,
                decision.limits,
                failed=limit,
                retry_after_ms=decision.reset_ms[i] if i < len(decision.reset_ms) else 1000,
                engine=decision.engine,
                used=limit.limit - decision.remaining[i] - limit.cost,
            )
    return None


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
