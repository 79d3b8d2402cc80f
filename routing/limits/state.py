"""The current state of a team's and a key's limits: used, remaining, resets at.

Builds the same limits the gateway's plan builds (:mod:`routing.limits.plan`:
the same store keys, budget periods and effective values) and reads them
with :meth:`routing.limits.limiter.Limiter.peek`, so the dashboard shows
what the next request will be admitted against, from Redis, the database or
this process, whichever the gateway uses now. Nothing is reserved.

Usage::

    rows = team_limit_state(team)        # team caps and the team budget
    rows = key_limit_state(api_key)      # the key's limits, budget, per model
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.utils import timezone

from accounts.models import Team
from keys.models import ApiKey
from routing.limits.limiter import limiter
from routing.limits.plan import (
    budget_limit,
    key_model_owner,
    key_owner,
    period_bounds,
    rate_limits,
    team_tag,
)
from routing.limits.types import Limit

_NEVER_ENDS = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class LimitState:
    """One limit as it stands: ``kind`` r/t/c/b; budgets in RUB, the rest in units."""

    kind: str
    scope: str
    model_id: str
    limit: int | Decimal
    used: int | Decimal
    resets_at: dt.datetime | None
    inherited: bool = False  # the team's default for keys, not the key's own
    engine: str = ""

    @property
    def remaining(self) -> int | Decimal:
        left = self.limit - self.used
        return left if left > 0 else type(left)(0)

    @property
    def percent(self) -> int:
        """Return how much is used, 0-100, for the meter."""
        if not self.limit:
            return 100
        return max(0, min(100, int(self.used * 100 / self.limit)))


def _read(
    limits: list[Limit], meta: list[tuple[str, bool]], periods: dict[int, str]
) -> list[LimitState]:
    values, engine = limiter.peek(limits)
    now = timezone.now()
    rows: list[LimitState] = []
    for i, (limit, (used, reset_ms)) in enumerate(zip(limits, values, strict=True)):
        model_id, inherited = meta[i]
        if limit.kind == "b":
            period = periods[i]
            end = period_bounds(period)[1]
            rows.append(
                LimitState(
                    kind="b",
                    scope=limit.scope,
                    model_id="",
                    limit=Decimal(limit.limit) / 1_000_000,
                    used=(Decimal(used) / 1_000_000).quantize(Decimal("0.01")),
                    resets_at=None if end >= _NEVER_ENDS else end,
                    engine=engine,
                )
            )
            continue
        resets_at = now + dt.timedelta(milliseconds=reset_ms) if used and reset_ms > 0 else None
        rows.append(
            LimitState(
                kind=limit.kind,
                scope=limit.scope,
                model_id=model_id,
                limit=limit.limit,
                used=used,
                resets_at=resets_at,
                inherited=inherited,
                engine=engine,
            )
        )
    return rows


def team_limit_state(team: Team) -> list[LimitState]:
    """Return the state of ``team``'s caps and budget (only those that are set)."""
    tag = team_tag(team.pk)
    limits = rate_limits(
        "team", tag, "team", team.rpm_limit, team.tpm_limit, team.concurrency_limit, 0
    )
    meta = [("", False)] * len(limits)
    periods: dict[int, str] = {}
    if team.budget_rub is not None:
        periods[len(limits)] = team.budget_period
        limits.append(
            budget_limit("team", tag, "team", team.budget_rub, team.budget_period, team.pk, None, 0)
        )
        meta.append(("", False))
    return _read(limits, meta, periods)


def key_limit_state(api_key: ApiKey) -> list[LimitState]:
    """Return the state of ``api_key``'s own (or inherited), budget and per-model limits."""
    team = api_key.team
    tag = team_tag(team.pk)
    owner = key_owner(api_key.pk)
    limits: list[Limit] = []
    meta: list[tuple[str, bool]] = []
    for kind, own, default in (
        ("r", api_key.rpm_limit, team.default_key_rpm),
        ("t", api_key.tpm_limit, team.default_key_tpm),
        ("c", api_key.concurrency_limit, team.default_key_concurrency),
    ):
        value = own or default
        if not value:
            continue
        args = {"r": (value, None, None), "t": (None, value, None), "c": (None, None, value)}[kind]
        limits += rate_limits("key", tag, owner, *args, 0)
        meta.append(("", not own))
    periods: dict[int, str] = {}
    if api_key.budget_rub is not None:
        periods[len(limits)] = api_key.budget_period
        limits.append(
            budget_limit(
                "key",
                tag,
                owner,
                api_key.budget_rub,
                api_key.budget_period,
                team.pk,
                api_key.pk,
                0,
            )
        )
        meta.append(("", False))
    for model_id, values in sorted((api_key.model_limits or {}).items()):
        found = rate_limits(
            "key-model",
            tag,
            key_model_owner(api_key.pk, model_id),
            values.get("rpm"),
            values.get("tpm"),
            values.get("concurrency"),
            0,
        )
        limits += found
        meta += [(model_id, False)] * len(found)
    return _read(limits, meta, periods)
