"""Read functions for the usage dashboard, the request log and the API.

Every function takes the team (or key) it reads for: there is no way to ask
for another team's rows through these. Charts read the daily roll-ups
(:class:`~routing.models.UsageDaily`), the request log and exports read raw
records through the ``(team, -created_at)`` index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.cache import cache
from django.db.models import BigIntegerField, Case, Count, F, Q, QuerySet, Sum, When
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from accounts.models import Team
from keys.models import ApiKey
from routing.models import UsageDaily, UsageRecord, UsageRollupDay
from routing.usage.rollups import (
    BUCKETS,
    bucket_filters,
    day_bounds,
    histogram_quantile,
    unrolled_tails,
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

    def add(self, row: dict[str, Any]) -> None:
        """Add one grouped row (sums and ``b0``..``bN``, see :func:`_grouped`)."""
        self.requests += row["requests"] or 0
        self.errors += row["errors"] or 0
        self.prompt_tokens += row["prompt_tokens"] or 0
        self.completion_tokens += row["completion_tokens"] or 0
        self.cost_rub += row["cost_rub"] or 0
        self.latency_ms_sum += row["latency_ms_sum"] or 0
        histogram = self.histogram
        for i in range(BUCKETS):
            histogram[i] += row[f"b{i}"] or 0

    def subtract(self, other: GroupTotals) -> None:
        """Take ``other`` (a part of these totals) out of them."""
        self.requests -= other.requests
        self.errors -= other.errors
        self.prompt_tokens -= other.prompt_tokens
        self.completion_tokens -= other.completion_tokens
        self.cost_rub -= other.cost_rub
        self.latency_ms_sum -= other.latency_ms_sum
        self.histogram = [a - b for a, b in zip(self.histogram, other.histogram, strict=True)]

    def copy(self, label: str) -> GroupTotals:
        return GroupTotals(
            label=label,
            requests=self.requests,
            errors=self.errors,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cost_rub=self.cost_rub,
            latency_ms_sum=self.latency_ms_sum,
            histogram=list(self.histogram),
        )


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


def _daily_sums() -> dict[str, Any]:
    """Aggregates of roll-up rows: sums, and the histogram bucket by bucket."""
    buckets = {
        f"b{i}": Sum(Cast(KT(f"latency_histogram__{i}"), BigIntegerField())) for i in range(BUCKETS)
    }
    return {
        "requests": Sum("requests"),
        "errors": Sum("errors"),
        "prompt_tokens": Sum("prompt_tokens"),
        "completion_tokens": Sum("completion_tokens"),
        "cost_rub": Sum("cost_rub"),
        "latency_ms_sum": Sum("latency_ms_sum"),
        **buckets,
    }


def _raw_sums() -> dict[str, Any]:
    """The same aggregates straight from raw records (the unrolled tail)."""
    buckets = {f"b{i}": Count("id", filter=q) for i, q in enumerate(bucket_filters())}
    return {
        "requests": Count("id"),
        "errors": Count("id", filter=Q(status__gte=400)),
        "prompt_tokens": Sum("prompt_tokens"),
        "completion_tokens": Sum("completion_tokens"),
        "cost_rub": Sum("cost_rub"),
        "latency_ms_sum": Sum("latency_ms"),
        **buckets,
    }


# What a series is keyed by, in roll-up rows and in raw records.
_DAILY_GROUP = {"model": F("model"), "key": F("key_id"), "provider": F("provider")}
_RAW_GROUP = {
    "model": Case(When(served_model="", then=F("requested_model")), default=F("served_model")),
    "key": F("key_id"),
    "provider": F("provider"),
}


@dataclass
class _Source:
    """One set of rows the page adds up: the roll-ups, or one day's raw tail.

    ``cache_key`` is set for the roll-ups only: their sums change only when
    a roll-up replaces a day, so they are kept in the cache under a key that
    names the roll-up state of the range (:func:`_rollup_state`). Raw tails
    are always read live.
    """

    rows: QuerySet[Any]
    group: Any
    sums: dict[str, Any]
    day: date | None  # set for a raw tail (one day); roll-ups group by ``day``
    cache_key: str = ""

    def _cached(self, part: str, read: Any) -> list[dict[str, Any]]:
        if not self.cache_key:
            return list(read())
        key = f"{self.cache_key}:{part}"
        rows = cache.get(key)
        if rows is None:
            rows = list(read())
            cache.set(key, rows, SUMMARY_CACHE_SECONDS)
        return rows

    def by_value(self) -> list[dict[str, Any]]:
        return self._cached(
            "value", lambda: self.rows.values(value=self.group).annotate(**self.sums).order_by()
        )

    def by_day(self) -> list[dict[str, Any]]:
        if self.day is not None:
            return [{"day": self.day, **self.rows.aggregate(**self.sums)}]
        return self._cached("day", lambda: self.rows.values("day").annotate(**self.sums).order_by())

    def by_day_and_value(self, values: set[Any]) -> list[dict[str, Any]]:
        rows = self.rows.annotate(value=self.group).filter(_among("value", values))
        if self.day is not None:
            return [{"day": self.day, **row} for row in _grouped(rows, ["value"], self.sums)]
        digest = hashlib.blake2b(repr(sorted(map(repr, values))).encode(), digest_size=12)
        return self._cached(
            f"series:{digest.hexdigest()}", lambda: _grouped(rows, ["day", "value"], self.sums)
        )


# How long the roll-up part of a usage overview is kept. Its key names the
# roll-up state of the range, so a new roll-up makes a new key at once; the
# lifetime only bounds the memory of views nobody asks for again.
SUMMARY_CACHE_SECONDS = 900


def _rollup_state(start: date, end: date) -> str:
    """A digest of when each day in ``start``..``end`` was last rolled up.

    Roll-ups are the only writer of daily rows and record each swap in
    :class:`~routing.models.UsageRollupDay` in the same transaction, so any
    change to the range's daily rows changes this digest (a digest of every
    day's state, not the newest time: two roll-ups of a day may commit out
    of order).
    """
    states = UsageRollupDay.objects.filter(day__gte=start, day__lte=end).order_by("day")
    text = repr(list(states.values_list("day", "rolled_at", "records")))
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def _among(field: str, values: set[Any]) -> Q:
    """``field`` is one of ``values`` (``None`` included: IN never matches NULL)."""
    condition = Q(**{f"{field}__in": [v for v in values if v is not None]})
    if None in values:
        condition |= Q(**{f"{field}__isnull": True})
    return condition


def _grouped(rows: QuerySet[Any], names: list[str], sums: dict[str, Any]) -> list[dict[str, Any]]:
    return list(rows.values(*names).annotate(**sums).order_by())


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
    :func:`~routing.usage.rollups.unrolled_tails`), so today never shows
    zeros while the request log already lists traffic. ``key`` narrows
    everything to one key of the team.

    The database adds the rows up (issue 19: 30 days of a team with 1,000
    models are 30,000 roll-up rows, 981 ms when merged here row by row):
    once by series, once by day, and once by day for the series shown; the
    "other" series is each day's total minus the shown ones. The roll-ups'
    sums are cached until a roll-up changes a day of the range (10M rows:
    the three roll-up queries took 0.5-1.1 s on a loaded box, mostly reading
    the histogram out of each row's JSON), so only the first view after a
    roll-up pays for them; today's raw tail is always live.
    """
    if group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}")
    daily = UsageDaily.objects.filter(team=team, day__gte=start, day__lte=end)
    raw = UsageRecord.objects.filter(team=team)
    if key is not None:
        daily, raw = daily.filter(key=key), raw.filter(key=key)
    # Version 1 of the cached rows' shape; bump it when _daily_sums changes.
    cache_key = (
        f"usage-summary:v1:{team.pk}:{key.pk if key is not None else '-'}:{start}:{end}:"
        f"{group}:{_rollup_state(start, end)}"
    )
    sources = [_Source(daily, _DAILY_GROUP[group], _daily_sums(), None, cache_key)]
    sources += [
        _Source(tail, _RAW_GROUP[group], _raw_sums(), day)
        for day, tail in unrolled_tails(raw, start=start, end=end, now=now)
    ]
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    index = {day: i for i, day in enumerate(days)}

    per_value: list[dict[str, Any]] = []
    for source in sources:
        per_value += source.by_value()
    key_labels = (
        _key_labels(team, {row["value"] for row in per_value if row["value"] is not None})
        if group == "key"
        else {}
    )

    def label_of(value: Any) -> str:
        if group == "key":
            return key_labels.get(value, "\u2014")
        if group == "provider":
            return str(value or "\u2014")
        return str(value)

    by_label: dict[str, GroupTotals] = {}
    for row in per_value:
        label = label_of(row["value"])
        by_label.setdefault(label, GroupTotals(label=label)).add(row)
    ranked = sorted(by_label.values(), key=lambda t: (-t.requests, t.label))
    if len(ranked) > MAX_SERIES:
        shown_labels = [t.label for t in ranked[: MAX_SERIES - 1]]
        labels = [*shown_labels, OTHER]
    else:
        shown_labels = labels = [t.label for t in ranked]
    shown = set(shown_labels)

    per_day = [GroupTotals(label=str(day)) for day in days]
    for source in sources:
        for row in source.by_day():
            per_day[index[row["day"]]].add(row)
    overall = GroupTotals(label="")
    for totals in per_day:
        overall.add(_as_row(totals))

    series: dict[str, list[GroupTotals]] = {
        label: [GroupTotals(label="") for _ in days] for label in shown_labels
    }
    shown_values = {row["value"] for row in per_value if label_of(row["value"]) in shown}
    if shown_values:
        for source in sources:
            for row in source.by_day_and_value(shown_values):
                series[label_of(row["value"])][index[row["day"]]].add(row)
    if OTHER in labels:
        other = [totals.copy("") for totals in per_day]
        for position, totals in enumerate(other):
            for label in shown_labels:
                totals.subtract(series[label][position])
        series[OTHER] = other
    return UsageSummary(
        days=days,
        group=group,
        labels=labels,
        series={label: series[label] for label in labels},
        totals=ranked,
        overall=overall,
        per_day=per_day,
    )


def _as_row(totals: GroupTotals) -> dict[str, Any]:
    row: dict[str, Any] = {
        "requests": totals.requests,
        "errors": totals.errors,
        "prompt_tokens": totals.prompt_tokens,
        "completion_tokens": totals.completion_tokens,
        "cost_rub": totals.cost_rub,
        "latency_ms_sum": totals.latency_ms_sum,
    }
    row.update({f"b{i}": count for i, count in enumerate(totals.histogram)})
    return row


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
