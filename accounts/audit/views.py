"""The audit log page of the dashboard (owners and admins)."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import render

from accounts import roles
from accounts.audit.forms import AuditFilterForm
from accounts.audit.selectors import audit_actor_labels, audit_event_list
from accounts.decorators import TeamRequest, team_required

EVENTS_PER_PAGE = 50


@team_required
def audit_log(request: TeamRequest) -> HttpResponse:
    """List the current team's audit events with filters by action and actor."""
    roles.require(request.membership.role, roles.Action.AUDIT_READ)
    team = request.membership.team
    form = AuditFilterForm(request.GET or None)
    action = actor = ""
    if form.is_valid():
        action = form.cleaned_data["action"]
        actor = form.cleaned_data["actor"].strip()
    events = audit_event_list(team=team, action=action, actor=actor)
    page = Paginator(events.select_related("actor"), EVENTS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "accounts/audit_log.html",
        {
            "form": form,
            "page": page,
            "query": query.urlencode(),
            "actors": audit_actor_labels(team=team),
        },
    )
