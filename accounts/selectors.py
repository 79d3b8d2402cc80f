"""Read helpers for the dashboard: which teams a user sees and in what role."""

from __future__ import annotations

from django.db.models import Case, QuerySet, Value, When
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import Invitation, Membership, Team, User

# Session key holding the id of the team the dashboard shows.
CURRENT_TEAM_SESSION_KEY = "xr_team_id"


def membership_list_for_user(*, user: User) -> QuerySet[Membership]:
    """Return the user's memberships with their teams, ordered by team name."""
    return Membership.objects.filter(user=user).select_related("team").order_by("team__name")


def membership_get(*, user: User, team_id: int) -> Membership | None:
    """Return the user's membership in team ``team_id``, or None."""
    return Membership.objects.select_related("team").filter(user=user, team_id=team_id).first()


def membership_current(request: HttpRequest) -> Membership | None:
    """Return the membership of the team chosen in this session.

    Falls back to the user's first team when none is chosen or the chosen
    one is no longer theirs (left, removed); None when the user has no team.
    The result is memoised on the request.
    """
    if hasattr(request, "_xr_membership"):
        cached: Membership | None = request._xr_membership
        return cached
    membership: Membership | None = None
    user = request.user
    if user.is_authenticated:
        team_id = request.session.get(CURRENT_TEAM_SESSION_KEY)
        if isinstance(team_id, int):
            membership = membership_get(user=user, team_id=team_id)  # type: ignore[arg-type]
        if membership is None:
            membership = membership_list_for_user(user=user).first()  # type: ignore[arg-type]
            if membership is not None:
                request.session[CURRENT_TEAM_SESSION_KEY] = membership.team_id
    request._xr_membership = membership  # type: ignore[attr-defined]
    return membership


def team_member_list(*, team: Team) -> QuerySet[Membership]:
    """Return the team's memberships, owners first."""
    rank = Case(
        When(role=Membership.Role.OWNER, then=Value(0)),
        When(role=Membership.Role.ADMIN, then=Value(1)),
        default=Value(2),
    )
    return (
        Membership.objects.filter(team=team).select_related("user").order_by(rank, "user__username")
    )


def invitation_pending_list(*, team: Team) -> list[Invitation]:
    """Return the team's invitations that can still be accepted."""
    return list(
        Invitation.objects.filter(
            team=team,
            accepted_at__isnull=True,
            revoked_at__isnull=True,
            expires_at__gt=timezone.now(),
        )
    )
