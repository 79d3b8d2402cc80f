"""Money, counts and relative times as the dashboard prints them, in both languages."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone, translation

from xrouter_site.templatetags.xrouter import count, format_ago, rub, rub_per_million

NBSP = "\xa0"


def test_rub_has_two_decimals_and_locale_separators() -> None:
    with translation.override("en"):
        assert rub(Decimal("1234.565")) == "1,234.57"
        assert rub(0) == "0.00"
        assert rub(None) == "—"
    with translation.override("ru"):
        assert rub(Decimal("1234.5")) == f"1{NBSP}234,50"
        assert rub(Decimal("0.2")) == "0,20"


def test_a_tiny_cost_is_not_shown_as_zero() -> None:
    with translation.override("en"):
        assert rub(Decimal("0.000650")) == "< 0.01"
    with translation.override("ru"):
        assert rub(Decimal("0.004")) == "< 0,01"


def test_prices_per_thousand_are_shown_per_million() -> None:
    with translation.override("ru"):
        assert rub_per_million(Decimal("0.5")) == "500,00"
        assert rub_per_million(Decimal("1.75")) == f"1{NBSP}750,00"
        assert rub_per_million(None) == "—"


def test_counts_are_grouped() -> None:
    with translation.override("en"):
        assert count(1234567) == "1,234,567"
    with translation.override("ru"):
        assert count(1234567) == f"1{NBSP}234{NBSP}567"


def test_relative_times_say_just_now_under_a_minute() -> None:
    now = timezone.now()
    with translation.override("ru"):
        assert format_ago(now - timedelta(seconds=5), now) == "только что"
        assert format_ago(now - timedelta(minutes=5), now) == f"5{NBSP}минут назад"
    with translation.override("en"):
        assert format_ago(now - timedelta(seconds=59), now) == "just now"
        assert format_ago(now - timedelta(hours=2, minutes=3), now) == f"2{NBSP}hours ago"
