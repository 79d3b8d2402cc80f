"""What a call costs: prices per 1,000 tokens applied to a usage, in RUB.

A leaf: the usage records, the limiter's budgets and the metrics views all
price usage the same way, to 1e-6 RUB (a micro-rouble, the budget unit).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from providers.base import Usage

_MICRO = Decimal("0.000001")
_THOUSAND = Decimal(1000)


def cost_rub(
    prompt_price: Decimal | None, completion_price: Decimal | None, usage: Usage
) -> Decimal:
    """Return the cost of ``usage`` at prices per 1,000 tokens, to 1e-6 RUB.

    Prompt tokens the provider does not bill (GigaChat's cached tokens, see
    ``Usage.billed_prompt_tokens``) are not charged either.
    """
    total = Decimal(0)
    if prompt_price is not None:
        billed = usage.billed_prompt_tokens
        total += prompt_price * (usage.prompt_tokens if billed is None else billed)
    if completion_price is not None:
        total += completion_price * usage.completion_tokens
    return (total / _THOUSAND).quantize(_MICRO, rounding=ROUND_HALF_UP)


def to_micro(amount: Decimal) -> int:
    """Return ``amount`` RUB in micro-roubles (the limiter's budget unit)."""
    return int((amount / _MICRO).to_integral_value(rounding=ROUND_HALF_UP))
