"""Display filters shared by every dashboard page: money, counts, times.

Money is in RUB with two decimals and the active language's separators
(``1,234.50`` in English, ``1 234,50`` in Russian). A non-zero amount too
small for two decimals reads ``< 0.01``, never a misleading ``0.00``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django import template
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.timesince import timesince
from django.utils.translation import gettext as _

register = template.Library()

CENT = Decimal("0.01")
#: Catalog prices are stored per 1,000 tokens; the dashboard shows them per
#: million, where two decimals keep every real price distinguishable.
PRICE_SCALE = Decimal(1000)


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def format_rub(value: Any) -> str:
    """Return ``value`` RUB with two decimals in the current locale; ``—`` for none."""
    amount = _decimal(value)
    if amount is None:
        return "—"
    if amount and abs(amount) < CENT:
        sign = "-" if amount < 0 else ""
        return f"< {sign}{number_format(CENT, 2)}"
    rounded = amount.quantize(CENT, rounding=ROUND_HALF_UP)
    return number_format(rounded, 2, force_grouping=True)


@register.filter
def rub(value: Any) -> str:
    """``{{ cost|rub }}``: an amount in RUB, two decimals, locale separators."""
    return format_rub(value)


@register.filter
def rub_per_million(value: Any) -> str:
    """``{{ model.prompt_price|rub_per_million }}``: a per-1K price shown per 1M tokens."""
    amount = _decimal(value)
    return format_rub(None if amount is None else amount * PRICE_SCALE)


@register.filter
def count(value: Any) -> str:
    """``{{ n|count }}``: an integer with the locale's thousands separator."""
    if value is None or value == "":
        return "—"
    return number_format(int(value), 0, force_grouping=True)


def format_ago(moment: datetime, now: datetime | None = None) -> str:
    """Return "just now" under a minute, else "5 minutes ago" (translated)."""
    now = now or timezone.now()
    if now - moment < timedelta(minutes=1):
        return _("just now")
    return _("%(time)s ago") % {"time": timesince(moment, now, depth=1)}


@register.filter
def ago(value: datetime | None) -> str:
    """``{{ key.last_used_at|ago }}``: a relative time; ``—`` for none."""
    if value is None:
        return "—"
    return format_ago(value)
