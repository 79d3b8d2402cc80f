"""Which limits apply to a request, and budget periods.

Limits come from three scopes, each with requests per minute, tokens per
minute and concurrent requests:

- **key**: the key's own values, else the team's defaults for its keys;
- **team**: the team's aggregate caps, shared by all its keys;
- **key-model**: the key's per-model values (``model_limits``), else the
  catalog model's per-key defaults.

Budgets (RUB, per key and per team) run per period: daily, weekly (from
Monday), monthly, or never reset, in ``TIME_ZONE``. PostgreSQL holds the
record (the sum of usage costs in the period); the limiter keeps the hot
counter in Redis and reads the record only when the counter is missing.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from keys.auth import KeyPrincipal
from routing.limits.types import WINDOW_MS, Limit
from routing.models import UsageRecord
from routing.table import ModelRoute
from routing.usage.pricing import to_micro

PERIODS = ("daily", "weekly", "monthly", "never")
_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def period_bounds(period: str, now: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    """Return the [start, end) of the budget period that contains ``now``."""
    now = now or timezone.now()
    local = now.astimezone(ZoneInfo(settings.TIME_ZONE))
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        start = midnight
        end = start + dt.timedelta(days=1)
    elif period == "weekly":
        start = midnight - dt.timedelta(days=local.weekday())
        end = start + dt.timedelta(days=7)
    elif period == "monthly":
        start = midnight.replace(day=1)
        end = (start + dt.timedelta(days=32)).replace(day=1)
    elif period == "never":
        return _EPOCH, dt.datetime(2200, 1, 1, tzinfo=dt.UTC)
    else:
        raise ValueError(f"unknown budget period {period!r}")
    # Normalise across DST changes: re-attach the zone to the wall time.
    zone = ZoneInfo(settings.TIME_ZONE)
    return (
        start.replace(tzinfo=None).replace(tzinfo=zone),
        end.replace(tzinfo=None).replace(tzinfo=zone),
    )


def spent_micro(*, team_id: int, key_id: int | None, since: dt.datetime) -> int:
    """Return micro-roubles recorded as spent since ``since`` (the record)."""
    rows = UsageRecord.objects.filter(team_id=team_id, created_at__gte=since)
    if key_id is not None:
        rows = rows.filter(key_id=key_id)
    total = rows.aggregate(total=Sum("cost_rub"))["total"]
    return to_micro(total or Decimal(0))


def team_tag(team_id: int) -> str:
    """Return the Redis hash tag every limit key of a team carries."""
    return f"{{t{team_id}}}"


def key_owner(key_id: int) -> str:
    """Return the owner part of a key's limit keys."""
    return f"k{key_id}"


def key_model_owner(key_id: int, model_id: str) -> str:
    """Return the owner part of a key's per-model limit keys."""
    return f"{key_owner(key_id)}:m:{model_id}"


def rate_limits(
    scope: str,
    tag: str,
    owner: str,
    rpm: int | None,
    tpm: int | None,
    conc: int | None,
    tokens: int,
) -> list[Limit]:
    """Return the requests, tokens and concurrency limits of one scope that are set."""
    lease_ms = settings.XROUTER_LEASE_TTL_SECONDS * 1000
    limits: list[Limit] = []
    if rpm:
        limits.append(Limit("r", scope, f"rl:{tag}:{owner}:rpm", rpm, 1, WINDOW_MS))
    if tpm:
        limits.append(Limit("t", scope, f"rl:{tag}:{owner}:tpm", tpm, tokens, WINDOW_MS))
    if conc:
        limits.append(Limit("c", scope, f"rl:{tag}:{owner}:conc", conc, 1, lease_ms))
    return limits


def budget_limit(
    scope: str,
    tag: str,
    owner: str,
    amount: Decimal,
    period: str,
    team_id: int,
    key_id: int | None,
    cost: int,
) -> Limit:
    """Return the budget limit of one scope for the period that contains now."""
    start, end = period_bounds(period)
    span = max(1000, int((end - timezone.now()).total_seconds() * 1000)) + 60_000
    return Limit(
        "b",
        scope,
        f"bud:{tag}:{owner}:{period}:{int(start.timestamp())}",
        to_micro(amount),
        cost,
        min(span, 400 * 86_400_000),
        initial=lambda: spent_micro(team_id=team_id, key_id=key_id, since=start),
    )


def requests_key(team_id: int, owner: str) -> str:
    """The limiter key of a requests-per-minute log (owner: ``k<key id>`` or ``team``)."""
    return f"rl:{team_tag(team_id)}:{owner}:rpm"


def limit_plan(
    principal: KeyPrincipal, route: ModelRoute, tokens: int, cost_micro: int
) -> list[Limit]:
    """Return every limit that applies to this request, tightest scopes first."""
    tag = team_tag(principal.team_id)
    key = key_owner(principal.key_id)
    overrides = principal.model_limits.get(route.model_id) or {}
    plan = rate_limits(
        "key-model",
        tag,
        key_model_owner(principal.key_id, route.model_id),
        overrides.get("rpm", route.key_rpm_limit),
        overrides.get("tpm", route.key_tpm_limit),
        overrides.get("concurrency", route.key_concurrency_limit),
        tokens,
    )
    plan += rate_limits(
        "key",
        tag,
        key,
        principal.rpm_limit or principal.team_default_key_rpm,
        principal.tpm_limit or principal.team_default_key_tpm,
        principal.concurrency_limit or principal.team_default_key_concurrency,
        tokens,
    )
    plan += rate_limits(
        "team",
        tag,
        "team",
        principal.team_rpm_limit,
        principal.team_tpm_limit,
        principal.team_concurrency_limit,
        tokens,
    )
    if principal.budget_rub is not None:
        plan.append(
            budget_limit(
                "key",
                tag,
                key,
                principal.budget_rub,
                principal.budget_period,
                principal.team_id,
                principal.key_id,
                cost_micro,
            )
        )
    if principal.team_budget_rub is not None:
        plan.append(
            budget_limit(
                "team",
                tag,
                "team",
                principal.team_budget_rub,
                principal.team_budget_period,
                principal.team_id,
                None,
                cost_micro,
            )
        )
    return plan
