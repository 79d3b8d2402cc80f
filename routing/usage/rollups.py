"""Daily usage roll-ups and the retention of raw usage records.

Raw :class:`~routing.models.UsageRecord` rows are rolled up per UTC day into
:class:`~routing.models.UsageDaily` (one row per team, key, model and
provider) so dashboard pages read a few thousand rows instead of millions.
A roll-up replaces its day in one transaction: running it twice, or while
late records arrive, gives the same result as running it once afterwards.
On PostgreSQL the database does the grouping (issue 19): an hour of raw
records at a time goes through ``INSERT ... SELECT ... GROUP BY ... ON
CONFLICT DO UPDATE`` into a temporary table of the session, then one short
transaction deletes the day's rows and inserts the staged ones, percentiles
included. SQLite (zero-config, one process's traffic) groups in the
database too and builds the rows in Python.

Retention (``XROUTER_USAGE_RETENTION_DAYS``) deletes raw records of old days
in batches, only once the day has been rolled up after it ended.

Usage::

    usage_rollup_day(day=date(2026, 11, 27))   # idempotent
    usage_rollup_recent()                       # today and yesterday
    usage_prune()                               # raw rows past retention
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, Count, F, Min, Q, QuerySet, Sum, When
from django.utils import timezone

from routing.models import UsageDaily, UsageRecord, UsageRollupDay

logger = logging.getLogger(__name__)

# Upper bounds (inclusive, ms) of the latency buckets; one more bucket holds
# everything slower. Fine below 1 s where most chat latencies fall.
LATENCY_BOUNDS_MS: tuple[int, ...] = (
    10,
    25,
    50,
    100,
    200,
    300,
    500,
    750,
    1000,
    1500,
    2000,
    3000,
    5000,
    7500,
    10000,
    15000,
    20000,
    30000,
    60000,
    120000,
)
BUCKETS = len(LATENCY_BOUNDS_MS) + 1


@dataclass(frozen=True, slots=True)
class RollupResult:
    day: date
    records: int
    rows: int
    skipped: bool = False


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """Return the UTC start (inclusive) and end (exclusive) of ``day``."""
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def bucket_filters() -> list[Q]:
    filters = []
    lower: int | None = None
    for upper in LATENCY_BOUNDS_MS:
        q = Q(latency_ms__lte=upper)
        if lower is not None:
            q &= Q(latency_ms__gt=lower)
        filters.append(q)
        lower = upper
    filters.append(Q(latency_ms__gt=LATENCY_BOUNDS_MS[-1]))
    return filters


def histogram_merge(histograms: Iterable[Sequence[int]]) -> list[int]:
    """Return the bucket-wise sum of ``histograms`` (missing buckets are 0)."""
    total = [0] * BUCKETS
    for histogram in histograms:
        for index, count in enumerate(histogram[:BUCKETS]):
            total[index] += count
    return total


def histogram_quantile(histogram: Sequence[int], q: float) -> int:
    """Return the ``q`` quantile (0..1) in ms, interpolated within its bucket.

    The overflow bucket has no upper bound, so a quantile there reports the
    last bound: "at least this slow".
    """
    count = sum(histogram)
    if count == 0:
        return 0
    rank = q * count
    seen = 0
    for index, in_bucket in enumerate(histogram):
        if in_bucket and seen + in_bucket >= rank:
            if index >= len(LATENCY_BOUNDS_MS):
                return LATENCY_BOUNDS_MS[-1]
            lower = LATENCY_BOUNDS_MS[index - 1] if index else 0
            upper = LATENCY_BOUNDS_MS[index]
            return round(lower + (upper - lower) * (rank - seen) / in_bucket)
        seen += in_bucket
    return LATENCY_BOUNDS_MS[-1]


def aggregate(records: QuerySet[UsageRecord], *, day: date) -> list[UsageDaily]:
    """Return unsaved roll-up rows of ``records`` (all of one UTC ``day``).

    One row per (team, key, model, provider); the usage page adds rows
    built from the raw records a roll-up has not seen yet to the saved ones.
    """
    buckets = {f"b{i}": Count("id", filter=q) for i, q in enumerate(bucket_filters())}
    rows = (
        records.annotate(
            rollup_model=Case(
                When(served_model="", then=F("requested_model")), default=F("served_model")
            )
        )
        .values("team_id", "key_id", "rollup_model", "provider")
        .annotate(
            n=Count("id"),
            n_errors=Count("id", filter=Q(status__gte=400)),
            prompt=Sum("prompt_tokens"),
            completion=Sum("completion_tokens"),
            cached=Sum("cached_tokens"),
            cost=Sum("cost_rub"),
            latency=Sum("latency_ms"),
            **buckets,
        )
        .order_by()
    )
    result = []
    for row in rows:
        # The bucket columns are named at run time (b0, b1, ...).
        histogram = [row[f"b{i}"] for i in range(BUCKETS)]  # type: ignore[literal-required]
        result.append(
            UsageDaily(
                day=day,
                team_id=row["team_id"],
                key_id=row["key_id"],
                model=row["rollup_model"],
                provider=row["provider"],
                requests=row["n"],
                errors=row["n_errors"],
                prompt_tokens=row["prompt"] or 0,
                completion_tokens=row["completion"] or 0,
                cached_tokens=row["cached"] or 0,
                cost_rub=row["cost"] or Decimal(0),
                latency_ms_sum=row["latency"] or 0,
                latency_p50_ms=histogram_quantile(histogram, 0.5),
                latency_p95_ms=histogram_quantile(histogram, 0.95),
                latency_histogram=histogram,
            )
        )
    return result


def usage_rollup_day(*, day: date) -> RollupResult:
    """Replace the roll-up of ``day`` (UTC) with one computed from raw records.

    A day whose raw records were pruned is left alone: rolling it up again
    would replace the kept totals with nothing.
    """
    state = UsageRollupDay.objects.filter(day=day).first()
    if state is not None and state.pruned:
        return RollupResult(day=day, records=state.records, rows=0, skipped=True)
    rolled_at = timezone.now()
    start, end = day_bounds(day)
    # Only records from before ``rolled_at``: the usage page reads those after
    # it from the raw log, and a record must never be counted by both.
    until = min(end, rolled_at)
    if connection.vendor == "postgresql":
        records, rows = _rollup_day_postgres(day, start, until, rolled_at)
    else:
        records, rows = _rollup_day_python(day, start, until, rolled_at)
    return RollupResult(day=day, records=records, rows=rows)


def _save_state(day: date, rolled_at: datetime, records: int) -> None:
    UsageRollupDay.objects.update_or_create(
        day=day, defaults={"rolled_at": rolled_at, "records": records}
    )


def _rollup_day_python(
    day: date, start: datetime, until: datetime, rolled_at: datetime
) -> tuple[int, int]:
    """The zero-config (SQLite) path: group in the database, build rows here.

    SQLite has one writer at a time, so the swap below cannot race another
    roll-up; its days are small (one process's traffic).
    """
    # Aggregate outside the write transaction: the read is the slow part and
    # must not hold the write lock while it runs.
    rows = aggregate(
        UsageRecord.objects.filter(created_at__gte=start, created_at__lt=until), day=day
    )
    records = sum(row.requests for row in rows)
    with transaction.atomic():
        UsageDaily.objects.filter(day=day).delete()
        UsageDaily.objects.bulk_create(rows, batch_size=1000)
        _save_state(day, rolled_at, records)
    return records, len(rows)


# PostgreSQL: the day is grouped by the database, a slice of raw records at a
# time, into a temporary table of this session; one short transaction then
# swaps the day's rows. Before (issue 19 bench, 10M rows): 80 us per raw
# record, most of it one Python object per roll-up row; see bench/RESULTS.md.
_STAGE = "xrouter_usage_rollup_stage"
# Each slice is one INSERT ... SELECT ... GROUP BY over this much of the day
# (the ``created_at`` index): its hash table stays small and no statement
# runs long even when a day holds millions of records.
SLICE = timedelta(hours=1)
_B = [f"b{i}" for i in range(BUCKETS)]
_SUMS = (
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_rub",
    "latency_ms_sum",
    *_B,
)


def _bucket_counts_sql() -> list[str]:
    counts = []
    lower: int | None = None
    for upper in LATENCY_BOUNDS_MS:
        low = "" if lower is None else f"latency_ms > {lower} AND "
        counts.append(f"count(*) FILTER (WHERE {low}latency_ms <= {upper})")
        lower = upper
    counts.append(f"count(*) FILTER (WHERE latency_ms > {LATENCY_BOUNDS_MS[-1]})")
    return counts


def quantile_sql(q: float) -> str:
    """Return SQL of :func:`histogram_quantile` over the columns ``b0``..``bN``.

    Computed in ``float8`` and rounded by ``round(float8)`` (half to even,
    like Python's ``round``), so both give the same milliseconds.
    """
    total = "(" + " + ".join(_B) + ")"
    rank = f"({q!r}::float8 * {total})"
    cases = [f"CASE WHEN {total} = 0 THEN 0"]
    seen = "0"
    for index, bucket in enumerate(_B):
        if index >= len(LATENCY_BOUNDS_MS):
            value = str(LATENCY_BOUNDS_MS[-1])
        else:
            lower = LATENCY_BOUNDS_MS[index - 1] if index else 0
            width = LATENCY_BOUNDS_MS[index] - lower
            value = f"round({lower} + {width}::float8 * ({rank} - ({seen})) / {bucket})::integer"
        cases.append(f"WHEN {bucket} > 0 AND ({seen}) + {bucket} >= {rank} THEN {value}")
        seen = " + ".join(_B[: index + 1])
    return " ".join(cases) + f" ELSE {LATENCY_BOUNDS_MS[-1]} END"


def _rollup_day_postgres(
    day: date, start: datetime, until: datetime, rolled_at: datetime
) -> tuple[int, int]:
    raw, daily = UsageRecord._meta.db_table, UsageDaily._meta.db_table
    sums = ", ".join(f"{name} {'numeric' if name == 'cost_rub' else 'bigint'}" for name in _SUMS)
    merge = ", ".join(f"{name} = s.{name} + EXCLUDED.{name}" for name in _SUMS)
    slice_sql = (
        f"INSERT INTO {_STAGE} AS s SELECT team_id, COALESCE(key_id, 0),"  # noqa: S608 - names from code
        " CASE WHEN served_model = '' THEN requested_model ELSE served_model END,"
        " provider, count(*), count(*) FILTER (WHERE status >= 400),"
        " sum(prompt_tokens), sum(completion_tokens), sum(cached_tokens), sum(cost_rub),"
        f" sum(latency_ms), {', '.join(_bucket_counts_sql())}"
        f" FROM {raw} WHERE created_at >= %s AND created_at < %s GROUP BY 1, 2, 3, 4"
        f" ON CONFLICT (team_id, key_id, model, provider) DO UPDATE SET {merge}"
    )
    swap_sql = (
        f"INSERT INTO {daily} (day, team_id, key_id, model, provider, requests, errors,"  # noqa: S608 - names from code
        " prompt_tokens, completion_tokens, cached_tokens, cost_rub, latency_ms_sum,"
        " latency_p50_ms, latency_p95_ms, latency_histogram)"
        " SELECT %s, team_id, NULLIF(key_id, 0), model, provider, requests, errors,"
        " prompt_tokens, completion_tokens, cached_tokens, cost_rub, latency_ms_sum,"
        f" {quantile_sql(0.5)}, {quantile_sql(0.95)}, jsonb_build_array({', '.join(_B)})"
        f" FROM {_STAGE}"
    )
    with connection.cursor() as cursor:
        # A temporary table is this session's alone: roll-ups running at once
        # in two workers never see each other's slices.
        cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{_STAGE}")
        cursor.execute(
            f"CREATE TEMPORARY TABLE {_STAGE} (team_id bigint NOT NULL,"
            " key_id bigint NOT NULL, model varchar(200) NOT NULL,"
            f" provider varchar(64) NOT NULL, {sums},"
            " PRIMARY KEY (team_id, key_id, model, provider))"
        )
        low = start
        while low < until:
            high = min(until, low + SLICE)
            cursor.execute(slice_sql, [low, high])
            low = high
        with transaction.atomic():
            # Two roll-ups of one day swap one after the other: a delete
            # that ran beside another's insert would leave both sets.
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s::integer, %s::integer)",
                [_ROLLUP_LOCK, day.toordinal()],
            )
            cursor.execute(f"DELETE FROM {daily} WHERE day = %s", [day])  # noqa: S608
            cursor.execute(swap_sql, [day])
            rows = cursor.rowcount
            cursor.execute(f"SELECT COALESCE(sum(requests), 0) FROM {_STAGE}")  # noqa: S608
            records = int(cursor.fetchone()[0])
            _save_state(day, rolled_at, records)
        # Left behind by a failed run, it is dropped by the next one (or
        # with the session).
        cursor.execute(f"DROP TABLE {_STAGE}")
    return records, rows


# First key of the advisory lock that serialises roll-up swaps ("XRUR").
_ROLLUP_LOCK = 0x58525552


def unrolled_tails(
    records: QuerySet[UsageRecord], *, start: date, end: date, now: datetime | None = None
) -> list[tuple[date, QuerySet[UsageRecord]]]:
    """Return, per day, the part of ``records`` that no saved roll-up counts yet.

    For today and yesterday (UTC) within ``start``..``end``: the records
    created since the day's last roll-up, or the whole day when it has none.
    A day rolled up after it ended is complete and adds nothing. The tail is
    a few minutes of records (roll-ups run every 300 s), read through the
    ``created_at`` index, so the usage page shows traffic at once.
    """
    today = (now or timezone.now()).astimezone(UTC).date()
    first_day, last_day = max(start, today - timedelta(days=1)), min(end, today)
    rolled = dict(
        UsageRollupDay.objects.filter(day__gte=first_day, day__lte=last_day).values_list(
            "day", "rolled_at"
        )
    )
    tails = []
    day = first_day
    while day <= last_day:
        day_start, day_end = day_bounds(day)
        since = rolled.get(day)
        if since is None or since < day_end:
            tail = records.filter(created_at__gte=max(day_start, since or day_start))
            tails.append((day, tail.filter(created_at__lt=day_end)))
        day += timedelta(days=1)
    return tails


def usage_unrolled(
    records: QuerySet[UsageRecord], *, start: date, end: date, now: datetime | None = None
) -> list[UsageDaily]:
    """Return roll-up rows (unsaved) of :func:`unrolled_tails`."""
    rows: list[UsageDaily] = []
    for day, tail in unrolled_tails(records, start=start, end=end, now=now):
        rows += aggregate(tail, day=day)
    return rows


def usage_rollup_range(*, start: date, end: date) -> list[RollupResult]:
    """Roll up every day from ``start`` to ``end`` inclusive (backfill)."""
    results = []
    day = start
    while day <= end:
        results.append(usage_rollup_day(day=day))
        day += timedelta(days=1)
    return results


def usage_rollup_recent(*, now: datetime | None = None) -> list[RollupResult]:
    """Roll up today and yesterday (UTC): records of a closed day arrive late."""
    today = (now or timezone.now()).astimezone(UTC).date()
    return usage_rollup_range(start=today - timedelta(days=1), end=today)


def usage_prune(
    *, now: datetime | None = None, batch_size: int = 10_000, retention_days: int | None = None
) -> int:
    """Delete raw records older than the retention period; return how many.

    Each day is rolled up first unless its roll-up ran after the day ended
    plus the claim window (records of a dead worker can arrive that late).
    Rows go in batches by primary key so one prune never holds a long lock.
    """
    days = settings.XROUTER_USAGE_RETENTION_DAYS if retention_days is None else retention_days
    if days <= 0:
        return 0
    now = now or timezone.now()
    cutoff_day = now.astimezone(UTC).date() - timedelta(days=days)
    cutoff, _end = day_bounds(cutoff_day)
    oldest = UsageRecord.objects.filter(created_at__lt=cutoff).aggregate(m=Min("created_at"))["m"]
    if oldest is None:
        return 0
    grace = timedelta(seconds=settings.XROUTER_USAGE_CLAIM_IDLE_SECONDS + 60)
    deleted = 0
    day = oldest.astimezone(UTC).date()
    while day < cutoff_day:
        start, end = day_bounds(day)
        state = UsageRollupDay.objects.filter(day=day).first()
        if state is None or (not state.pruned and state.rolled_at < end + grace):
            usage_rollup_day(day=day)
        while True:
            ids = list(
                UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end)
                .order_by()
                .values_list("id", flat=True)[:batch_size]
            )
            if not ids:
                break
            count, _by_model = UsageRecord.objects.filter(id__in=ids).delete()
            deleted += count
        UsageRollupDay.objects.filter(day=day).update(pruned=True)
        day += timedelta(days=1)
    if deleted:
        logger.info("usage records pruned", extra={"deleted": deleted, "before": str(cutoff_day)})
    return deleted
