"""Dashboard pages of the routing app: deployment health and breakers."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import render

from accounts.decorators import TeamRequest, team_required
from routing import selectors


@team_required
def deployment_list(request: TeamRequest) -> HttpResponse:
    """Show each deployment's health, probe latency and breaker state.

    Any team member may read it: the page names providers and models but
    holds no credential, URL or team data.
    """
    return render(
        request,
        "routing/deployments.html",
        {
            "rows": selectors.deployment_status_list(),
            "interval": settings.XROUTER_HEALTH_INTERVAL_SECONDS,
        },
    )
