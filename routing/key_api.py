"""Self-service key info: ``GET /api/v1/key`` and ``GET /api/v1/credits``.

OpenRouter's endpoints of the same names, answered to the calling key
(standard or management) and only ever about that key and its own team:

- ``/key``: the key's label, budget (``limit``, ``limit_reset``,
  ``limit_remaining``), spend (``usage`` ever, and this day / week / month),
  rate limits with the requests used in the current minute, and expiry;
- ``/credits``: the team's budget (``total_credits``, per ``limit_reset``
  period) and its spend in that period (``total_usage``).

Amounts are RUB (``currency``). Spend is read from the usage records, which
are written off the hot path: a request of the last second may be missing.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.db.models import Sum
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from keys.api import ManagementApiView
from keys.authentication import AnyKeyAuthentication
from keys.models import ApiKey
from keys.principal import KeyPrincipal
from routing.limits.limiter import limiter
from routing.limits.plan import period_bounds, requests_key
from routing.models import UsageRecord

PERIODS = ("daily", "weekly", "monthly")


def _spent(*, team_id: int, key_id: int | None, since: dt.datetime | None) -> float:
    rows = UsageRecord.objects.filter(team_id=team_id)
    if key_id is not None:
        rows = rows.filter(key_id=key_id)
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    total = rows.aggregate(total=Sum("cost_rub"))["total"]
    return float(total or Decimal(0))


def _period_start(period: str) -> dt.datetime | None:
    return None if period == "never" else period_bounds(period)[0]


def _budget(
    amount: Decimal | None, period: str, *, team_id: int, key_id: int | None
) -> dict[str, Any]:
    """The OpenRouter-style limit fields of one budget."""
    if amount is None:
        return {"limit": None, "limit_reset": None, "limit_remaining": None}
    spent = _spent(team_id=team_id, key_id=key_id, since=_period_start(period))
    return {
        "limit": float(amount),
        "limit_reset": None if period == "never" else period,
        "limit_remaining": max(float(amount) - spent, 0.0),
    }


def _rate_limit(principal: KeyPrincipal) -> dict[str, Any]:
    rpm = principal.rpm_limit or principal.team_default_key_rpm
    used = limiter.requests_in_window(requests_key(principal.team_id, f"k{principal.key_id}"))
    return {
        "requests": rpm,
        "interval": "1m",
        "requests_used": used,
        "requests_remaining": max(rpm - used, 0) if rpm else None,
        "tokens": principal.tpm_limit or principal.team_default_key_tpm,
        "concurrency": principal.concurrency_limit or principal.team_default_key_concurrency,
    }


def key_info(principal: KeyPrincipal) -> dict[str, Any]:
    key = ApiKey.objects.filter(pk=principal.key_id).only("prefix", "last4").first()
    team_id, key_id = principal.team_id, principal.key_id
    info: dict[str, Any] = {
        "label": key.masked if key is not None else principal.prefix,
        "name": principal.name,
        **_budget(principal.budget_rub, principal.budget_period, team_id=team_id, key_id=key_id),
        "usage": _spent(team_id=team_id, key_id=key_id, since=None),
        "currency": "RUB",
        "is_free_tier": False,
        "is_provisioning_key": principal.kind == ApiKey.Kind.MANAGEMENT,
        "rate_limit": _rate_limit(principal),
        "expires_at": dt.datetime.fromtimestamp(principal.expires_at, tz=dt.UTC).isoformat()
        if principal.expires_at is not None
        else None,
    }
    for period in PERIODS:
        info[f"usage_{period}"] = _spent(
            team_id=team_id, key_id=key_id, since=period_bounds(period)[0]
        )
    return info


def credits_info(principal: KeyPrincipal) -> dict[str, Any]:
    period = principal.team_budget_period
    start = _period_start(period)
    spent = _spent(team_id=principal.team_id, key_id=None, since=start)
    budget = principal.team_budget_rub
    return {
        "total_credits": float(budget) if budget is not None else None,
        "total_usage": spent,
        "remaining": max(float(budget) - spent, 0.0) if budget is not None else None,
        "limit_reset": None if period == "never" else period,
        "period_start": start.isoformat() if start is not None else None,
        "currency": "RUB",
    }


def _principal(request: Request) -> KeyPrincipal:
    if not isinstance(request.auth, KeyPrincipal):
        raise exceptions.NotAuthenticated("Pass an API key as 'Authorization: Bearer <key>'.")
    return request.auth


_NUMBER_OR_NULL = serializers.FloatField(allow_null=True)


class KeyInfoApi(ManagementApiView):
    authentication_classes = [AnyKeyAuthentication]

    @extend_schema(
        operation_id="key_current",
        summary="The calling key: budget, spend, rate limits, expiry (OpenRouter's /key)",
        responses={
            200: inline_serializer(
                "KeyInfoEnvelope",
                fields={
                    "data": inline_serializer(
                        "KeyInfo",
                        fields={
                            "label": serializers.CharField(),
                            "name": serializers.CharField(),
                            "limit": _NUMBER_OR_NULL,
                            "limit_reset": serializers.CharField(allow_null=True),
                            "limit_remaining": _NUMBER_OR_NULL,
                            "usage": serializers.FloatField(),
                            "usage_daily": serializers.FloatField(),
                            "usage_weekly": serializers.FloatField(),
                            "usage_monthly": serializers.FloatField(),
                            "currency": serializers.CharField(),
                            "is_free_tier": serializers.BooleanField(),
                            "is_provisioning_key": serializers.BooleanField(),
                            "rate_limit": serializers.DictField(),
                            "expires_at": serializers.DateTimeField(allow_null=True),
                        },
                    )
                },
            ),
            401: OpenApiResponse(description="No valid key."),
        },
    )
    def get(self, request: Request) -> Response:
        return Response({"data": key_info(_principal(request))})


class CreditsApi(ManagementApiView):
    authentication_classes = [AnyKeyAuthentication]

    @extend_schema(
        operation_id="credits_current",
        summary="The team's budget and spend this period (OpenRouter's /credits)",
        responses={
            200: inline_serializer(
                "CreditsEnvelope",
                fields={
                    "data": inline_serializer(
                        "Credits",
                        fields={
                            "total_credits": _NUMBER_OR_NULL,
                            "total_usage": serializers.FloatField(),
                            "remaining": _NUMBER_OR_NULL,
                            "limit_reset": serializers.CharField(allow_null=True),
                            "period_start": serializers.DateTimeField(allow_null=True),
                            "currency": serializers.CharField(),
                        },
                    )
                },
            ),
            401: OpenApiResponse(description="No valid key."),
        },
    )
    def get(self, request: Request) -> Response:
        return Response({"data": credits_info(_principal(request))})
