"""Daily roll-ups, their idempotency, percentiles and raw-record retention."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.utils import timezone

from routing.models import UsageDaily, UsageRecord, UsageRollupDay
from routing.usage import rollups
from routing.usage import tasks as usage_tasks
from tests.accounts.cast import Cast

DAY = date(2026, 11, 20)


def at(day: date, hour: int) -> float:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp()


@pytest.fixture
def seeded(cast: Cast, record_usage: Callable[..., object]) -> Cast:
    key = cast.alice_key.api_key
    for latency in (100, 200, 300, 400):
        record_usage(team_id=cast.team.pk, key_id=key.pk, created=at(DAY, 10), latency_ms=latency)
    record_usage(
        team_id=cast.team.pk,
        key_id=key.pk,
        created=at(DAY, 11),
        requested_model="local/other",
        served_model="",
        provider="",
        status=502,
        error_code="upstream_error",
        prompt_tokens=0,
        completion_tokens=0,
        cost_rub="0",
        latency_ms=50,
    )
    # Outside the day (before and after midnight UTC) and another team's.
    record_usage(team_id=cast.team.pk, key_id=key.pk, created=at(DAY, 0) - 1)
    record_usage(team_id=cast.team.pk, key_id=key.pk, created=at(DAY + timedelta(days=1), 0))
    record_usage(team_id=cast.other_team.pk, key_id=cast.mallory_key.api_key.pk, created=at(DAY, 9))
    return cast


def test_rollup_groups_a_day_by_team_key_model_provider(seeded: Cast) -> None:
    """One row per (team, key, model, provider) with exact sums for that UTC day."""
    result = rollups.usage_rollup_day(day=DAY)
    assert (result.records, result.rows) == (6, 3)
    ok = UsageDaily.objects.get(day=DAY, team=seeded.team, model="local/mock")
    assert (ok.requests, ok.errors) == (4, 0)
    assert (ok.prompt_tokens, ok.completion_tokens) == (40, 80)
    assert ok.cost_rub == Decimal("0.140000")
    assert ok.latency_ms_sum == 1000
    assert ok.provider == "local" and ok.key_id == seeded.alice_key.api_key.pk
    # Nothing was served: the requested model names the row, the error counts.
    failed = UsageDaily.objects.get(day=DAY, team=seeded.team, model="local/other")
    assert (failed.requests, failed.errors, failed.provider) == (1, 1, "")
    assert UsageDaily.objects.filter(day=DAY, team=seeded.other_team).count() == 1


def test_rollup_twice_replaces_instead_of_adding(
    seeded: Cast, record_usage: Callable[..., object]
) -> None:
    """Re-running a day gives the same rows; a late record is included once."""
    rollups.usage_rollup_day(day=DAY)
    rollups.usage_rollup_day(day=DAY)
    assert UsageDaily.objects.get(day=DAY, team=seeded.team, model="local/mock").requests == 4
    record_usage(team_id=seeded.team.pk, key_id=seeded.alice_key.api_key.pk, created=at(DAY, 23))
    rollups.usage_rollup_day(day=DAY)
    assert UsageDaily.objects.get(day=DAY, team=seeded.team, model="local/mock").requests == 5
    assert UsageDaily.objects.filter(day=DAY).count() == 3
    assert UsageRollupDay.objects.get(day=DAY).records == 7


def test_histogram_percentiles_merge_across_rows(seeded: Cast) -> None:
    """p50/p95 come from bucket counts, which add up across rows."""
    rollups.usage_rollup_day(day=DAY)
    ok = UsageDaily.objects.get(day=DAY, team=seeded.team, model="local/mock")
    # 100 ms -> (50, 100], 200 -> (100, 200], 300 -> (200, 300], 400 -> (300, 500]
    assert ok.latency_histogram[3:7] == [1, 1, 1, 1]
    assert ok.latency_p50_ms == 200
    assert ok.latency_p95_ms == 460  # rank 3.8: 300 + (500 - 300) * 0.8
    merged = rollups.histogram_merge(
        row.latency_histogram for row in UsageDaily.objects.filter(team=seeded.team)
    )
    assert sum(merged) == 5
    assert rollups.histogram_quantile(merged, 0.5) == 150
    assert rollups.histogram_quantile([0] * rollups.BUCKETS, 0.5) == 0
    slow = [0] * rollups.BUCKETS
    slow[-1] = 3
    assert rollups.histogram_quantile(slow, 0.95) == rollups.LATENCY_BOUNDS_MS[-1]


def test_prune_rolls_up_first_then_deletes_in_batches(
    cast: Cast, record_usage: Callable[..., object]
) -> None:
    """Raw rows past retention go; their day's roll-up stays and is never redone."""
    now = timezone.now()
    old_day = (now - timedelta(days=100)).date()
    for hour in range(5):
        record_usage(team_id=cast.team.pk, key_id=None, created=at(old_day, hour))
    record_usage(team_id=cast.team.pk, key_id=None, created=now.timestamp())
    deleted = rollups.usage_prune(now=now, batch_size=2, retention_days=90)
    assert deleted == 5
    assert UsageRecord.objects.count() == 1
    kept = UsageDaily.objects.get(day=old_day)
    assert kept.requests == 5
    assert UsageRollupDay.objects.get(day=old_day).pruned is True
    # A re-run of the pruned day must not replace its totals with nothing.
    assert rollups.usage_rollup_day(day=old_day).skipped is True
    assert UsageDaily.objects.get(day=old_day).requests == 5
    assert rollups.usage_prune(now=now, retention_days=90) == 0
    assert rollups.usage_prune(now=now, retention_days=0) == 0


def test_tasks_are_thin_wrappers_scheduled_in_settings(seeded: Cast, settings: object) -> None:
    """Beat runs the recent roll-up and the prune; the tasks call the services."""
    schedule = settings.CELERY_BEAT_SCHEDULE  # type: ignore[attr-defined]
    assert schedule["usage-rollup"]["task"] == "routing.usage_rollup_recent"
    assert schedule["usage-prune"]["task"] == "routing.usage_prune"
    assert usage_tasks.usage_rollup_day.delay(DAY.isoformat()).get() == 3
    assert usage_tasks.usage_prune.delay().get() == 0
    assert usage_tasks.usage_rollup_recent.delay().get() == 0


def test_retention_setting_default() -> None:
    """Raw records are kept 90 days unless configured otherwise."""
    assert settings.XROUTER_USAGE_RETENTION_DAYS == 90
