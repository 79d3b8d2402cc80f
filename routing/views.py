"""Dashboard pages of the routing app: deployment health and breakers."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import render

from accounts.decorators import TeamRequest, team_required
from routing import selectors
from routing.limits.limiter import limiter
from routing.table import get_table
from routing.versions import version_calendar


@team_required
def deployment_list(request: TeamRequest) -> HttpResponse:
    """Show each deployment's health, probe latency and breaker state.

    Any team member may read it: the page names providers and models but
    holds no credential, URL or team data.
    """
    table = get_table()
    return render(
        request,
        "routing/deployments.html",
        {
            "rows": selectors.deployment_status_list(),
            "interval": settings.XROUTER_HEALTH_INTERVAL_SECONDS,
            # Deprecated branches and upcoming promotions/withdrawals, so
            # teams see a sunset coming before requests start failing.
            "deprecated": sorted(
                (r for r in table.models.values() if r.deprecated), key=lambda r: r.model_id
            ),
            "calendar": version_calendar(table.models.values()),
            # This worker's limiter: an outage of its Redis makes it fall back
            # to in-process limits (also counted in Prometheus).
            "limiter_fallbacks": limiter.fail_open_events,
            "limiter_degraded": bool(settings.XROUTER_LIMITER_REDIS_URL) and not limiter.uses_redis,
            "limiter_shared": bool(settings.XROUTER_LIMITER_REDIS_URL),
        },
    )
