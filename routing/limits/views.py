"""The dashboard's Limits page: team caps, default key limits and budget.

Owners and admins change them (``team.limits`` in accounts.roles); members
see the same page read-only, and a member's POST is refused with 403 before
any form is read. Next to each limit is its state from the store the
gateway enforces it in (:mod:`routing.limits.state`).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from accounts import roles
from accounts.decorators import TeamRequest, team_required
from accounts.forms import TeamLimitsForm
from accounts.services import TEAM_BUDGET_FIELDS, TEAM_LIMIT_FIELDS, team_limits_update
from routing.limits.state import LimitState, team_limit_state

_STATE_OF_FIELD = {"rpm_limit": "r", "tpm_limit": "t", "concurrency_limit": "c", "budget_rub": "b"}


def _form_errors_from(form: TeamLimitsForm, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


@team_required
def team_limits(request: TeamRequest) -> HttpResponse:
    """Show the team's limits and their state; owners and admins change them."""
    membership = request.membership
    team = membership.team
    can_change = roles.allows(membership.role, roles.Action.LIMITS_CHANGE)
    fields = TEAM_LIMIT_FIELDS + TEAM_BUDGET_FIELDS
    initial = {name: getattr(team, name) for name in fields}
    status = 200
    if request.method == "POST":
        if not can_change:
            raise PermissionDenied(str(roles.RoleDenied(roles.Action.LIMITS_CHANGE)))
        form = TeamLimitsForm(request.POST)
        if form.is_valid():
            try:
                team_limits_update(
                    team=team,
                    by=request.user,  # type: ignore[arg-type]
                    **{name: form.cleaned_data[name] for name in fields},
                )
            except roles.RoleDenied as exc:
                raise PermissionDenied(str(exc)) from None
            except ValidationError as exc:
                _form_errors_from(form, exc)
            else:
                messages.success(request, _("Limits and budget saved."))
                return redirect("limits:team")
        status = 400
    else:
        form = TeamLimitsForm(initial=initial)
    if not can_change:
        for field in form.fields.values():
            field.disabled = True
    states = {row.kind: row for row in team_limit_state(team)}
    field_states: dict[str, LimitState | None] = {
        name: states.get(kind) for name, kind in _STATE_OF_FIELD.items()
    }
    return render(
        request,
        "routing/limits.html",
        {
            "form": form,
            "can_change": can_change,
            "field_states": field_states,
            "team_fields": [form[name] for name in TEAM_LIMIT_FIELDS[:3]],
            "default_fields": [form[name] for name in TEAM_LIMIT_FIELDS[3:]],
            "budget_fields": [form[name] for name in TEAM_BUDGET_FIELDS],
            "time_zone": settings.TIME_ZONE,
        },
        status=status,
    )
