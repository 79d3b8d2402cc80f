"""Usage charts: today is live between roll-ups, nothing counts twice, labels read well."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from django.utils import timezone, translation

from routing.usage import charts, rollups, selectors
from tests.accounts.cast import Cast


def today_requests(cast: Cast, **kwargs: object) -> int:
    today = timezone.now().astimezone(UTC).date()
    summary = selectors.usage_summary(
        team=cast.team, start=today - timedelta(days=6), end=today, group="model", **kwargs
    )
    return summary.per_day[-1].requests


def test_today_counts_records_no_roll_up_has_seen_yet(
    cast: Cast, record_usage: Callable[..., object]
) -> None:
    """Before, between and after roll-ups, today shows every record exactly once."""
    key = cast.alice_key.api_key
    record_usage(team_id=cast.team.pk, key_id=key.pk)
    assert today_requests(cast) == 1
    rollups.usage_rollup_recent()
    assert today_requests(cast) == 1
    record_usage(team_id=cast.team.pk, key_id=key.pk, latency_ms=900.0)
    record_usage(team_id=cast.other_team.pk, key_id=cast.mallory_key.api_key.pk)
    assert today_requests(cast) == 2
    rollups.usage_rollup_recent()
    assert today_requests(cast) == 2
    assert today_requests(cast, key=key) == 2


def test_a_key_filter_reads_only_that_key(cast: Cast, record_usage: Callable[..., object]) -> None:
    """``key=`` narrows roll-ups and the live tail alike to one key of the team."""
    record_usage(team_id=cast.team.pk, key_id=cast.alice_key.api_key.pk)
    record_usage(team_id=cast.team.pk, key_id=None)
    rollups.usage_rollup_recent()
    record_usage(team_id=cast.team.pk, key_id=cast.alice_key.api_key.pk)
    record_usage(team_id=cast.team.pk, key_id=None)
    assert today_requests(cast) == 4
    assert today_requests(cast, key=cast.alice_key.api_key) == 2


def test_a_closed_day_reads_only_its_roll_up(
    cast: Cast, record_usage: Callable[..., object]
) -> None:
    """A day rolled up after it ended adds no raw records (they are in the roll-up)."""
    day = date(2026, 11, 20)
    noon = datetime(2026, 11, 20, 12, tzinfo=UTC)
    record_usage(team_id=cast.team.pk, key_id=None, created=noon.timestamp())
    rollups.usage_rollup_day(day=day)
    summary = selectors.usage_summary(
        team=cast.team,
        start=day,
        end=day,
        group="model",
        now=noon + timedelta(hours=13),
    )
    assert summary.overall.requests == 1


def test_bar_chart_tooltips_axis_and_slots() -> None:
    """Each day has a slot with exact values; the axis has round, compact ticks."""
    days = [date(2026, 11, 1) + timedelta(days=i) for i in range(30)]
    series = {"a/m": [0.0] * 29 + [1234.0], "b/m": [0.0] * 29 + [66.0]}
    with translation.override("en"):
        chart = charts.bar_chart(days, series, title="Requests")
    assert chart.ticks == ["0", "500", "1k", "1.5k", "2k"]
    last = chart.slots[-1]
    assert (last.heading, last.total, last.current, last.flip) == (
        "Nov. 30, 2026",
        "1,300",
        True,
        True,
    )
    assert [(e.label, e.value) for e in last.entries] == [("a/m", "1,234"), ("b/m", "66")]
    assert chart.slots[0].entries == [] and chart.slots[0].flip is False
    # At most ten dates under the axis, counted back from the last day.
    assert [s.label for s in chart.slots if s.label][-1] == "Nov 30"
    assert sum(1 for s in chart.slots if s.label) == 10
    assert chart.svg.count("<rect") == 2 and chart.empty is False


def test_russian_axis_uses_russian_separators_and_units() -> None:
    """Ticks, tooltips and units follow the active language."""
    days = [date(2026, 12, 1)]
    with translation.override("ru"):
        bars = charts.bar_chart(days, {"m": [4500.0]}, title="Токены")
        latency = charts.line_chart(days, {"p50": [1500], "p95": [None]}, title="Задержка")
    assert bars.ticks[1:3] == ["1,5\xa0тыс.", "3\xa0тыс."]
    assert bars.slots[0].total == "4\xa0500"
    assert [(e.label, e.value) for e in latency.slots[0].entries] == [
        ("p50", "1\xa0500 мс"),
        ("p95", "нет запросов"),
    ]


def test_latency_is_drawn_as_lines_broken_where_no_requests() -> None:
    """Percentiles are polylines; a day without requests splits the line."""
    days = [date(2026, 12, 1) + timedelta(days=i) for i in range(5)]
    with translation.override("en"):
        chart = charts.line_chart(
            days,
            {"p50": [100, 120, None, 90, 95], "p95": [None, None, 400, None, None]},
            title="Latency",
        )
    assert chart.svg.count("<polyline") == 3
    assert "<circle" not in chart.svg
    assert chart.ticks == ["0 ms", "100 ms", "200 ms", "300 ms", "400 ms"]


def test_nice_step_keeps_counts_whole() -> None:
    """Ticks of counts are whole numbers; money may step by fractions."""
    assert charts.nice_step(1, integer=True) == 1
    assert charts.nice_step(3, integer=True) == 1
    assert charts.nice_step(130, integer=True) == 50
    assert charts.nice_step(0.9, integer=False) == 0.25
    assert charts.nice_step(0, integer=False) == 1
