"""The overview's roll-up sums are cached until a roll-up changes a day.

The cache key names every day's roll-up state in the range, the team and
the key, so a view never shows sums older than the last roll-up and a team
never reads another team's cached sums.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from routing.models import UsageDaily
from routing.usage import records as usage
from routing.usage import rollups, selectors
from tests.accounts.cast import Cast


def _events(team_id: int, key_id: int | None, day: Any, count: int, tag: str) -> list[Any]:
    start = datetime(day.year, day.month, day.day, 1, tzinfo=UTC)
    return [
        usage.UsageEvent(
            request_id=f"cache-{tag}-{n}",
            created=(start + timedelta(seconds=n)).timestamp(),
            team_id=team_id,
            key_id=key_id,
            endpoint="chat",
            requested_model=f"m/{n % 2}",
            served_model=f"m/{n % 2}",
            provider="p1",
            prompt_tokens=3,
            completion_tokens=4,
            cost_rub="0.01",
            latency_ms=100.0 + n,
        )
        for n in range(count)
    ]


def _daily_reads(queries: CaptureQueriesContext) -> int:
    table = UsageDaily._meta.db_table
    return sum(1 for q in queries.captured_queries if f'FROM "{table}"' in q["sql"])


def test_a_repeated_view_reads_no_rollups_and_a_new_rollup_is_seen(cast: Cast) -> None:
    cache.clear()
    today = timezone.now().astimezone(UTC).date()
    day = today - timedelta(days=3)
    usage.write_events(_events(cast.team.pk, cast.alice_key.api_key.pk, day, 5, "a"))
    rollups.usage_rollup_day(day=day)

    def view() -> selectors.UsageSummary:
        return selectors.usage_summary(
            team=cast.team, start=today - timedelta(days=6), end=today, group="model"
        )

    with CaptureQueriesContext(connection) as first:
        cold = view()
    with CaptureQueriesContext(connection) as second:
        warm = view()
    assert _daily_reads(first) == 3
    assert _daily_reads(second) == 0
    assert [(t.label, t.requests, t.p95_ms) for t in warm.totals] == [
        (t.label, t.requests, t.p95_ms) for t in cold.totals
    ]
    assert warm.overall.requests == cold.overall.requests == 5

    # Late records for the day, then the periodic roll-up: the next view
    # shows them, without a cache flush.
    usage.write_events(_events(cast.team.pk, cast.alice_key.api_key.pk, day, 8, "late"))
    rollups.usage_rollup_day(day=day)
    assert view().overall.requests == 13


def test_cached_sums_are_the_teams_own(cast: Cast) -> None:
    cache.clear()
    today = timezone.now().astimezone(UTC).date()
    day = today - timedelta(days=2)
    usage.write_events(_events(cast.team.pk, cast.alice_key.api_key.pk, day, 6, "ours"))
    usage.write_events(_events(cast.other_team.pk, None, day, 2, "theirs"))
    rollups.usage_rollup_day(day=day)
    start = today - timedelta(days=6)

    ours = selectors.usage_summary(team=cast.team, start=start, end=today, group="key")
    theirs = selectors.usage_summary(team=cast.other_team, start=start, end=today, group="key")
    narrowed = selectors.usage_summary(
        team=cast.other_team, start=start, end=today, group="key", key=cast.alice_key.api_key
    )

    assert ours.overall.requests == 6
    assert theirs.overall.requests == 2
    assert narrowed.overall.requests == 0
