"""Budgets: refused before the call when spent, charged at catalog prices."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import openai
import pytest
import time_machine
from django.utils import timezone

from providers.base import Usage
from routing.limits.plan import period_bounds, spent_micro
from routing.models import UsageRecord
from routing.usage import pricing
from routing.usage import records as usage
from tests.conftest import LiveGateway

# 300 prompt tokens for the emulator (it counts words): 0.15 RUB at 0.5/1K,
# more than half of the budgets below once settled.
BIG = [{"role": "user", "content": "x " * 300}]


def _drain() -> list[UsageRecord]:
    sink = usage.stream_sink()
    if sink is not None:
        while sink.consume_once(block_ms=10):
            pass
    usage.flush_all()
    return list(UsageRecord.objects.all())


def test_cost_matches_catalog_prices_to_the_kopeck() -> None:
    # 0.5 and 1.5 RUB per 1K tokens (tests/conftest.py::openai_catalog).
    cost = pricing.cost_rub(
        Decimal("0.5"), Decimal("1.5"), Usage(prompt_tokens=1234, completion_tokens=567)
    )
    assert cost == Decimal("1.467500")
    assert pricing.cost_rub(None, Decimal("2"), Usage(completion_tokens=1)) == Decimal("0.002000")
    assert pricing.to_micro(Decimal("1.4675")) == 1_467_500


def test_charged_cost_equals_the_catalog_price(gateway: LiveGateway) -> None:
    completion = gateway.client().chat.completions.create(
        model="local/mock", messages=[{"role": "user", "content": "сколько стоит"}]
    )
    [row] = _drain()
    expected = (
        Decimal(completion.usage.prompt_tokens) * Decimal("0.5")
        + Decimal(completion.usage.completion_tokens) * Decimal("1.5")
    ) / 1000
    assert row.cost_rub == expected.quantize(Decimal("0.000001"))
    assert (row.prompt_tokens, row.completion_tokens) == (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
    )


def test_spent_budget_refuses_before_calling_upstream(
    gateway: LiveGateway, make_key: Any, upstream_control: Any
) -> None:
    key = make_key(budget_rub=Decimal("0.01"), budget_period="daily")
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key.plaintext, max_retries=0)
    calls = 0
    with pytest.raises(openai.APIStatusError) as info:
        for _ in range(20):
            client.chat.completions.create(
                model="local/mock", max_tokens=5, messages=[{"role": "user", "content": "x " * 200}]
            )
            calls += 1
    assert info.value.status_code == 402
    assert info.value.body["code"] == "insufficient_budget"
    assert int(info.value.response.headers["Retry-After"]) >= 1
    assert upstream_control.stats()["requests_total"] == calls
    spent = sum(row.cost_rub for row in _drain() if row.status == 200)
    assert spent <= Decimal("0.01")


def test_two_concurrent_requests_cannot_share_a_budget_for_one(
    gateway: LiveGateway, make_key: Any, upstream_control: Any
) -> None:
    # Each request reserves ~(prompt + 100 max tokens) at 0.5/1.5 RUB per 1K,
    # about 0.16 RUB; the budget fits one reservation, not two. A slow
    # upstream keeps them all in flight together (a finished request settles
    # to its real, much smaller cost and frees the rest of the budget).
    upstream_control.set_config(latency_ms=500)
    key = make_key(budget_rub=Decimal("0.25"), budget_period="never")
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key.plaintext, max_retries=0)

    def one(_: int) -> int:
        try:
            client.chat.completions.create(
                model="local/mock", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
            )
            return 200
        except openai.APIStatusError as exc:
            return exc.status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(8)))
    assert statuses.count(200) == 1, statuses
    assert statuses.count(402) == 7


def test_team_budget_applies_across_keys(gateway: LiveGateway, make_key: Any, team: Any) -> None:
    team.budget_rub = Decimal("0.20")
    team.budget_period = "monthly"
    team.save()
    outcomes = []
    for _ in range(3):
        key = make_key()
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key.plaintext, max_retries=0)
        try:
            client.chat.completions.create(model="local/mock", max_tokens=5, messages=BIG)
            outcomes.append(200)
        except openai.APIStatusError as exc:
            outcomes.append(exc.status_code)
            assert "team budget" in exc.body["message"]
    assert outcomes == [200, 402, 402]


def test_budget_record_survives_a_redis_restart(gateway: LiveGateway, make_key: Any) -> None:
    """With the hot counter gone, the spend is read back from PostgreSQL."""
    from django.core.cache import cache

    key = make_key(budget_rub=Decimal("0.25"), budget_period="monthly")
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key.plaintext, max_retries=0)
    client.chat.completions.create(model="local/mock", max_tokens=5, messages=BIG)
    _drain()
    assert (
        spent_micro(
            team_id=key.api_key.team_id, key_id=key.api_key.pk, since=period_bounds("monthly")[0]
        )
        > 0
    )
    cache.clear()  # the limiter's counters live in the same Redis database
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="local/mock", max_tokens=5, messages=BIG)
    assert info.value.status_code == 402


@pytest.mark.parametrize(
    ("period", "now", "start", "end"),
    [
        ("daily", "2026-03-14T23:59:59", "2026-03-14T00:00:00", "2026-03-15T00:00:00"),
        ("daily", "2026-03-15T00:00:00", "2026-03-15T00:00:00", "2026-03-16T00:00:00"),
        ("weekly", "2026-03-15T12:00:00", "2026-03-09T00:00:00", "2026-03-16T00:00:00"),
        ("weekly", "2026-03-16T00:00:00", "2026-03-16T00:00:00", "2026-03-23T00:00:00"),
        ("monthly", "2026-12-31T23:59:59", "2026-12-01T00:00:00", "2027-01-01T00:00:00"),
        ("monthly", "2027-01-01T00:00:00", "2027-01-01T00:00:00", "2027-02-01T00:00:00"),
        ("monthly", "2028-02-29T10:00:00", "2028-02-01T00:00:00", "2028-03-01T00:00:00"),
    ],
)
def test_periods_roll_over(period: str, now: str, start: str, end: str, settings: Any) -> None:
    settings.TIME_ZONE = "UTC"
    moment = dt.datetime.fromisoformat(now).replace(tzinfo=dt.UTC)
    bounds = period_bounds(period, moment)
    assert [b.astimezone(dt.UTC).replace(tzinfo=None).isoformat() for b in bounds] == [start, end]


def test_period_follows_the_configured_time_zone(settings: Any) -> None:
    settings.TIME_ZONE = "Europe/Moscow"  # UTC+3
    start, end = period_bounds("daily", dt.datetime(2026, 5, 1, 22, 30, tzinfo=dt.UTC))
    assert start.astimezone(dt.UTC) == dt.datetime(2026, 5, 1, 21, 0, tzinfo=dt.UTC)
    assert end - start == dt.timedelta(days=1)


def test_a_new_period_starts_with_a_fresh_budget(
    gateway: LiveGateway, make_key: Any, settings: Any
) -> None:
    settings.TIME_ZONE = "UTC"
    key = make_key(budget_rub=Decimal("0.25"), budget_period="daily")
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key.plaintext, max_retries=0)
    day = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    with time_machine.travel(day, tick=True):
        client.chat.completions.create(model="local/mock", max_tokens=5, messages=BIG)
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model="local/mock", max_tokens=5, messages=BIG)
    _drain()
    with time_machine.travel(day + dt.timedelta(days=1), tick=True):
        ok = client.chat.completions.create(model="local/mock", max_tokens=5, messages=BIG)
    assert ok.choices[0].message.content
