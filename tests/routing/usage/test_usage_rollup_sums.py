"""Roll-ups and the usage overview add up to exactly the raw records.

Issue 19 moved both into the database (PostgreSQL: grouped per slice into a
session's temporary table, then one swap; the overview: sums by series and
by day in SQL). These tests recompute everything from the raw rows in Python
and compare field by field, on whichever backend the suite runs (SQLite
takes its own roll-up path), so neither the SQL nor the slicing can drift.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from keys.services import api_key_create
from routing.models import UsageDaily, UsageRecord, UsageRollupDay
from routing.usage import records as usage
from routing.usage import rollups, selectors
from tests.accounts.cast import Cast

DAY = date(2026, 11, 20)
_ids = itertools.count(1)
# Every bucket edge and both sides of it, the overflow bucket, and zero.
LATENCIES = sorted(
    {0, 1, *rollups.LATENCY_BOUNDS_MS, *(b + 1 for b in rollups.LATENCY_BOUNDS_MS), 999_999}
)


def _event(team_id: int, key_id: int | None, created: datetime, n: int, **kw: Any) -> Any:
    fields: dict[str, Any] = {
        "request_id": f"sum-{next(_ids)}-{n}",
        "created": created.timestamp(),
        "team_id": team_id,
        "key_id": key_id,
        "endpoint": "chat",
        "requested_model": f"m/{n % 3}",
        "served_model": f"m/{n % 3}" if n % 7 else "",
        "provider": ("p1", "p2", "")[n % 3 if n % 5 else 2],
        "prompt_tokens": n % 13,
        "completion_tokens": n % 17,
        "cached_tokens": n % 4,
        "cost_rub": f"0.{n % 1000:03d}123",
        "status": 502 if n % 9 == 0 else 200,
        "latency_ms": float(LATENCIES[n % len(LATENCIES)]),
    }
    fields.update(kw)
    return usage.UsageEvent(**fields)


def _write_day(cast: Cast, day: date, count: int, seed: int) -> None:
    """``count`` records of ``day`` over both teams, three keys and no key,
    on and between the hour marks the PostgreSQL roll-up slices at."""
    bob = api_key_create(team=cast.team, name="acme ci", created_by=cast.alice).api_key
    keys = [cast.alice_key.api_key.pk, bob.pk, None]
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    rng = random.Random(seed)
    events = []
    for n in range(count):
        if n % 4 == 0:
            created = start + timedelta(hours=rng.randrange(24))  # exactly on a slice edge
        else:
            created = start + timedelta(microseconds=rng.randrange(86_400_000_000))
        if n % 6 == 5:
            events.append(_event(cast.other_team.pk, cast.mallory_key.api_key.pk, created, n))
        else:
            events.append(_event(cast.team.pk, keys[n % 3], created, n))
    # The last microsecond of the day and the first of the next.
    events.append(_event(cast.team.pk, None, start + timedelta(days=1, microseconds=-1), 1))
    events.append(_event(cast.team.pk, None, start + timedelta(days=1), 2))
    usage.write_events(events)


def _bucket(latency: int) -> int:
    return bisect.bisect_left(rollups.LATENCY_BOUNDS_MS, latency)


def _expected(records: Any) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Roll-up rows computed here, from raw rows, without the code under test."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in records:
        model = r["served_model"] or r["requested_model"]
        row = out.setdefault(
            (r["team_id"], r["key_id"], model, r["provider"]),
            {
                "requests": 0,
                "errors": 0,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "cached_tokens": 0,
                "cost_rub": Decimal(0),
                "latency_ms_sum": 0,
                "latency_histogram": [0] * rollups.BUCKETS,
            },
        )
        row["requests"] += 1
        row["errors"] += r["status"] >= 400
        for name in ("prompt_tokens", "completion_tokens", "cached_tokens", "cost_rub"):
            row[name] += r[name]
        row["latency_ms_sum"] += r["latency_ms"]
        row["latency_histogram"][_bucket(r["latency_ms"])] += 1
    for row in out.values():
        row["latency_p50_ms"] = rollups.histogram_quantile(row["latency_histogram"], 0.5)
        row["latency_p95_ms"] = rollups.histogram_quantile(row["latency_histogram"], 0.95)
    return out


RAW_FIELDS = (
    "team_id",
    "key_id",
    "served_model",
    "requested_model",
    "provider",
    "status",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_rub",
    "latency_ms",
)


def _saved(day: date) -> dict[tuple[Any, ...], dict[str, Any]]:
    rows = UsageDaily.objects.filter(day=day).values()
    return {
        (r["team_id"], r["key_id"], r["model"], r["provider"]): {
            k: r[k]
            for k in (
                "requests",
                "errors",
                "prompt_tokens",
                "completion_tokens",
                "cached_tokens",
                "cost_rub",
                "latency_ms_sum",
                "latency_histogram",
                "latency_p50_ms",
                "latency_p95_ms",
            )
        }
        for r in rows
    }


def test_rollup_rows_equal_raw_sums_for_every_group(
    cast: Cast, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every (team, key, model, provider) row has the exact sums, histogram
    and percentiles of its raw records; slice edges count each record once."""
    _write_day(cast, DAY, 400, seed=1)
    start, end = rollups.day_bounds(DAY)
    raw = UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end)
    expected = _expected(raw.values(*RAW_FIELDS))
    # Slices shorter than an hour, and not dividing it, cross every edge.
    monkeypatch.setattr(rollups, "SLICE", timedelta(minutes=47))
    result = rollups.usage_rollup_day(day=DAY)
    assert result.records == raw.count() == sum(r["requests"] for r in expected.values())
    assert result.rows == len(expected)
    assert _saved(DAY) == expected
    assert UsageRollupDay.objects.get(day=DAY).records == result.records
    # Late records of the day, then a re-run: included once, nothing doubled.
    usage.write_events(
        [_event(cast.team.pk, None, start + timedelta(hours=h), 7) for h in (0, 5, 23)]
    )
    again = rollups.usage_rollup_day(day=DAY)
    assert again.records == result.records + 3
    assert _saved(DAY) == _expected(raw.values(*RAW_FIELDS))
    assert rollups.usage_rollup_day(day=DAY).rows == again.rows
    assert UsageDaily.objects.filter(day=DAY).count() == again.rows


def test_rollup_of_today_stops_at_its_own_start(cast: Cast) -> None:
    """A record created after the roll-up began is left to the live tail."""
    now = timezone.now()
    usage.write_events([_event(cast.team.pk, None, now - timedelta(seconds=5), 1)])
    usage.write_events([_event(cast.team.pk, None, now + timedelta(minutes=5), 2)])
    today = now.astimezone(UTC).date()
    if (now + timedelta(minutes=5)).astimezone(UTC).date() != today:
        pytest.skip("too close to midnight UTC")
    assert rollups.usage_rollup_day(day=today).records == 1
    summary = selectors.usage_summary(
        team=cast.team, start=today, end=today, group="model", now=now
    )
    assert summary.overall.requests == 2


@pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="the SQL percentiles are PostgreSQL's"
)
def test_sql_percentiles_equal_python_percentiles(db: None) -> None:
    """quantile_sql gives histogram_quantile's milliseconds, ties and edges included."""
    rng = random.Random(19)
    histograms = [[0] * rollups.BUCKETS, [0] * (rollups.BUCKETS - 1) + [3]]
    for _ in range(400):
        shape = rng.choice(("sparse", "dense", "one"))
        histogram = [0] * rollups.BUCKETS
        if shape == "one":
            histogram[rng.randrange(rollups.BUCKETS)] = rng.choice((1, 2, 20, 7919))
        else:
            for i in range(rollups.BUCKETS):
                if shape == "dense" or rng.random() < 0.2:
                    histogram[i] = rng.randrange(0, 50)
        histograms.append(histogram)
    columns = ", ".join(f"b{i}" for i in range(rollups.BUCKETS))
    values = ", ".join("(" + ", ".join(str(c) for c in h) + ")" for h in histograms)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {rollups.quantile_sql(0.5)}, {rollups.quantile_sql(0.95)} "  # noqa: S608
            f"FROM (VALUES {values}) AS t({columns})"
        )
        got = cursor.fetchall()
    want = [
        (rollups.histogram_quantile(h, 0.5), rollups.histogram_quantile(h, 0.95))
        for h in histograms
    ]
    assert [tuple(row) for row in got] == want


def _raw_totals(records: Any, label_of: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
    totals: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"requests": 0, "errors": 0, "tokens": 0, "cost": Decimal(0), "hist": None}
    )
    hist: dict[str, list[int]] = defaultdict(lambda: [0] * rollups.BUCKETS)
    for r in records:
        label = label_of(r)
        t = totals[label]
        t["requests"] += 1
        t["errors"] += r["status"] >= 400
        t["tokens"] += r["prompt_tokens"] + r["completion_tokens"]
        t["cost"] += r["cost_rub"]
        hist[label][_bucket(r["latency_ms"])] += 1
    for label, t in totals.items():
        t["p50"] = rollups.histogram_quantile(hist[label], 0.5)
        t["p95"] = rollups.histogram_quantile(hist[label], 0.95)
        del t["hist"]
    return dict(totals)


def _shown(t: selectors.GroupTotals) -> dict[str, Any]:
    return {
        "requests": t.requests,
        "errors": t.errors,
        "tokens": t.tokens,
        "cost": t.cost_rub,
        "p50": t.p50_ms,
        "p95": t.p95_ms,
    }


@pytest.mark.parametrize("group", selectors.GROUPS)
def test_overview_equals_raw_records_by_series_day_and_total(cast: Cast, group: str) -> None:
    """Roll-ups of past days plus today's unrolled tail give, for each
    grouping, the raw records' totals per series, per day and overall;
    another team's rows never appear; series past eight share "other"."""
    now = timezone.now()
    today = now.astimezone(UTC).date()
    first = today - timedelta(days=3)
    bob = api_key_create(team=cast.team, name="acme ci", created_by=cast.alice).api_key
    keys = [cast.alice_key.api_key.pk, bob.pk, None]
    events = []
    for n in range(600):
        day = first + timedelta(days=n % 4)
        created = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
            seconds=(n * 7919) % 86_000
        )
        if day == today:
            created = min(created, now - timedelta(seconds=1 + n))
        team, key = (cast.team.pk, keys[n % 3]) if n % 5 else (cast.other_team.pk, None)
        # Twelve models: more series than the chart draws.
        events.append(_event(team, key, created, n, requested_model=f"m/{n % 12}", served_model=""))
    usage.write_events(events)
    for back in (1, 2, 3):
        rollups.usage_rollup_day(day=today - timedelta(days=back))
    rollups.usage_rollup_day(day=today)
    # Today's tail: records after today's roll-up, which the page reads raw.
    later = timezone.now()
    if later.astimezone(UTC).date() != today:
        pytest.skip("the day ended during the test")
    usage.write_events(
        [_event(cast.team.pk, keys[n % 3], later, 1000 + n, served_model="") for n in range(9)]
    )
    summary = selectors.usage_summary(
        team=cast.team, start=first, end=today, group=group, now=later
    )

    def label_of(r: dict[str, Any]) -> str:
        if group == "key":
            return {cast.alice_key.api_key.pk: "alice", bob.pk: "bob"}.get(r["key_id"], "\u2014")
        if group == "provider":
            return r["provider"] or "\u2014"
        return r["served_model"] or r["requested_model"]

    records = list(UsageRecord.objects.filter(team=cast.team).values(*RAW_FIELDS, "created_at"))
    want = _raw_totals(records, label_of)
    names = {
        f"{cast.alice_key.api_key.name} ({cast.alice_key.api_key.masked})": "alice",
        f"{bob.name} ({bob.masked})": "bob",
    }
    got = {names.get(t.label, t.label): _shown(t) for t in summary.totals}
    assert got == want
    assert [t.requests for t in summary.totals] == sorted(
        (t.requests for t in summary.totals), reverse=True
    )
    assert _shown(summary.overall) == _raw_totals(records, lambda r: "")[""]
    by_day = {
        str(day): v
        for day, v in _raw_totals(records, lambda r: str(r["created_at"].date())).items()
    }
    assert {t.label: _shown(t) for t in summary.per_day} == by_day
    # Each day's series add up to the day; "other" holds what is not drawn.
    for position, day_totals in enumerate(summary.per_day):
        assert sum(s[position].requests for s in summary.series.values()) == day_totals.requests
        assert sum(s[position].cost_rub for s in summary.series.values()) == day_totals.cost_rub
    if group == "model":
        assert summary.labels[-1] == selectors.OTHER and len(summary.labels) == 8
        drawn = {label for label in summary.labels if label != selectors.OTHER}
        for position, day in enumerate(summary.days):
            on_day = [r for r in records if r["created_at"].date() == day]
            rest = [r for r in on_day if label_of(r) not in drawn]
            other = summary.series[selectors.OTHER][position]
            assert other.requests == len(rest)
            assert other.p95_ms == (_raw_totals(rest, lambda r: "")[""]["p95"] if rest else 0)
    # Nothing of the other team: its rows would change every total above,
    # and its key has no label here.
    assert "globex prod" not in " ".join(t.label for t in summary.totals)
