"""Read functions for the usage dashboard, the request log and the API.

Every function takes the team (or key) it reads for: there is no way to ask
for another team's rows through these. Charts read the daily roll-ups
(:class:`~routing.models.UsageDaily`), the request log and exports read raw
records through the ``(team, -created_at)`` index.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Q, QuerySet

from accounts.models import Team
from keys.models import ApiKey
from routing.models import UsageDaily, UsageRecord
from routing.usage.rollups import (
    BUCKETS,
    day_bounds,
    histogram_merge,
    histogram_quantile,
    usage_unrolled,
)

GROUPS = ("model", "key", "provider")
# Series beyond this many share one "other" series so charts stay legible.
MAX_SERIES = 8
OTHER = "\u2026"


@dataclass
class GroupTotals:
    """Totals of one chart series (a model, key or provider) over the range."""

    label: str
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_rub: Decimal = Decimal(0)
    latency_ms_sum: int = 0
    histogram: list[int] = field(default_factory=lambda: [0] * BUCKETS)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def p50_ms(self) -> int:
        return histogram_quantile(self.histogram, 0.5)

    @property
    def p95_ms(self) -> int:
        return histogram_quantile(self.histogram, 0.95)

    @property
    def avg_latency_ms(self) -> int:
        return round(self.latency_ms_sum / self.requests) if self.requests else 0

    def add(self, row: tuple[Any, ...]) -> None:
        """Add one roll-up row, as returned by :func:`usage_summary`'s query."""
        self.requests += row[4]
        self.errors += row[5]
        self.prompt_tokens += row[6]
        self.completion_tokens += row[7]
        self.cost_rub += row[8]
        self.latency_ms_sum += row[9]
        self.histogram = histogram_merge([self.histogram, row[10]])


@dataclass
class UsageSummary:
    """What the usage page draws: per-day series per group, and totals."""

    days: list[date]
    group: str
    labels: list[str]
    # label -> per-day totals, aligned with ``days``
    series: dict[str, list[GroupTotals]]
    totals: list[GroupTotals]
    overall: GroupTotals
    per_day: list[GroupTotals]


def _key_labels(team: Team, key_ids: set[int]) -> dict[int | None, str]:
    labels: dict[int | None, str] = {None: "\u2014"}
    for key in ApiKey.objects.filter(team=team, id__in=key_ids):
        labels[key.pk] = f"{key.name} ({key.masked})"
    return labels


ROW_FIELDS = (
    "day",
    "key_id",
    "model",
    "provider",
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cost_rub",
    "latency_ms_sum",
    "latency_histogram",
)


def usage_summary(
    *,
    team: Team,
    start: date,
    end: date,
    group: str,
    key: ApiKey | None = None,
    now: datetime | None = None,
) -> UsageSummary:
    """Return the team's usage from ``start`` to ``end`` (inclusive) by ``group``.

    Saved roll-ups plus the raw records created since the last one (see
    :func:`~routing.usage.rollups.usage_unrolled`), so today never shows
    zeros while the request log already lists traffic. ``key`` narrows
    everything to one key of the team.
    """
    if group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}")
    daily = UsageDaily.objects.filter(team=team, day__gte=start, day__lte=end)
    raw = UsageRecord.objects.filter(team=team)
    if key is not None:
        daily, raw = daily.filter(key=key), raw.filter(key=key)
    rows: list[tuple[Any, ...]] = list(daily.order_by().values_list(*ROW_FIELDS))
    rows += [
        tuple(getattr(row, name) for name in ROW_FIELDS)
        for row in usage_unrolled(raw, start=start, end=end, now=now)
    ]
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    key_labels = _key_labels(team, {row[1] for row in rows if row[1] is not None})

    def label_of(row: tuple[Any, ...]) -> str:
        if group == "key":
            return key_labels.get(row[1], "\u2014")
        if group == "provider":
            return str(row[3] or "\u2014")
        return str(row[2])

    overall = GroupTotals(label="")
    by_label: dict[str, GroupTotals] = {}
    for row in rows:
        label = label_of(row)
        by_label.setdefault(label, GroupTotals(label=label)).add(row)
        overall.add(row)
    ranked = sorted(by_label.values(), key=lambda t: (-t.requests, t.label))
    shown = {t.label for t in ranked[:MAX_SERIES]}
    if len(ranked) > MAX_SERIES:
        shown_labels = [t.label for t in ranked[: MAX_SERIES - 1]]
        shown = set(shown_labels)
        labels = [*shown_labels, OTHER]
    else:
        labels = [t.label for t in ranked]

    index = {day: i for i, day in enumerate(days)}
    series: dict[str, list[GroupTotals]] = defaultdict(
        lambda: [GroupTotals(label="") for _ in days]
    )
    per_day = [GroupTotals(label=str(day)) for day in days]
    for row in rows:
        label = label_of(row)
        position = index[row[0]]
        series[label if label in shown else OTHER][position].add(row)
        per_day[position].add(row)
    return UsageSummary(
        days=days,
        group=group,
        labels=labels,
        series={label: series[label] for label in labels},
        totals=ranked,
        overall=overall,
        per_day=per_day,
    )


def usage_record_list(
    *, team: Team, start: date, end: date, request_id: str = ""
) -> QuerySet[UsageRecord]:
    """Return the team's raw records in the range, newest first.

    ``request_id`` is an exact match on the generation id or on the
    client's X-Request-ID (the correlation id, which a client may repeat:
    every record that carries it is listed). Both hit an index; a prefix
    search would scan the table.
    """
    first, _ = day_bounds(start)
    _, last = day_bounds(end)
    records = UsageRecord.objects.filter(team=team, created_at__gte=first, created_at__lt=last)
    if request_id:
        records = records.filter(
            Q(generation_id=request_id)
            # Spelled like the partial index's condition, so it is used.
            | (Q(correlation_id=request_id) & ~Q(correlation_id=""))
            | Q(generation_id__isnull=True, request_id=request_id)
        )
    return records.select_related("key").order_by("-created_at", "-id")


def usage_record_recent(*, team: Team, key: ApiKey, limit: int = 20) -> list[UsageRecord]:
    """Return ``key``'s latest ``limit`` raw records, newest first (its index)."""
    records = UsageRecord.objects.filter(team=team, key=key).order_by("-created_at", "-id")
    return list(records[:limit])


def usage_record_get(
    *, request_id: str, team_id: int, key_id: int | None = None
) -> UsageRecord | None:
    """Return one record of the team (and of the key, if given), or None.

    ``request_id`` is the generation id (``gen-...``); a record written
    before generation ids existed answers to its old request id, which
    migration 0007 copied into ``generation_id``.
    """
    records = UsageRecord.objects.filter(
        Q(generation_id=request_id) | Q(generation_id__isnull=True, request_id=request_id),
        team_id=team_id,
    )
    if key_id is not None:
        records = records.filter(key_id=key_id)
    return records.select_related("key").first()


# "request_id" is the client's X-Request-ID (the correlation id);
# "generation_id" is the gateway's key of the record.
CSV_COLUMNS = (
    "generation_id",
    "request_id",
    "upstream_id",
    "created_at",
    "key_name",
    "key_prefix",
    "endpoint",
    "requested_model",
    "served_model",
    "model_version",
    "provider",
    "status",
    "error_code",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_rub",
    "latency_ms",
    "ttft_ms",
    "stream",
    "stream_complete",
)


def usage_record_export_rows(
    *, team: Team, start: date, end: date, chunk_size: int = 2000
) -> Iterator[tuple[Any, ...]]:
    """Yield CSV rows of the team's records in the range, oldest first."""
    first, _ = day_bounds(start)
    _, last = day_bounds(end)
    sources = {"key_name": "key__name", "key_prefix": "key__prefix", "request_id": "correlation_id"}
    fields = [sources.get(c, c) for c in CSV_COLUMNS]
    records = (
        UsageRecord.objects.filter(team=team, created_at__gte=first, created_at__lt=last)
        .order_by("created_at", "id")
        .values_list(*fields)
    )
    yield from records.iterator(chunk_size=chunk_size)
