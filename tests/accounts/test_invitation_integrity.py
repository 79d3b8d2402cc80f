"""Invitations die with their creator's right to issue them, and expire.

Issue 15 (Medium 4): a removed or demoted admin rejoined as admin with an
invitation link they had made earlier.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.test import override_settings
from django.utils import timezone

from accounts.models import Membership, Team
from accounts.roles import RoleDenied
from accounts.services import (
    team_invitation_accept,
    team_invitation_create,
    team_member_remove,
    team_member_set_role,
)
from tests.accounts.cast import Cast, build_cast, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def cast(team: Team, other_team: Team) -> Cast:
    return build_cast(team=team, other_team=other_team)


def membership(cast: Cast, user: object) -> Membership:
    return Membership.objects.get(team=cast.team, user=user)


def accept_page(cast: Cast, token: str, user: object) -> object:
    return cast.client_for(user).post(f"/accounts/invite/{token}/")  # type: ignore[arg-type]


def test_removed_admin_cannot_rejoin_with_their_own_link(cast: Cast) -> None:
    link = team_invitation_create(team=cast.team, created_by=cast.carol, role="admin")
    team_member_remove(membership=membership(cast, cast.carol), by=membership(cast, cast.alice))
    link.invitation.refresh_from_db()
    assert link.invitation.revoked_at is not None
    response = accept_page(cast, link.token, cast.carol)
    assert response.status_code == 404  # type: ignore[attr-defined]
    assert b"invalid, used or expired" in response.content  # type: ignore[attr-defined]
    assert not Membership.objects.filter(team=cast.team, user=cast.carol).exists()


def test_demoted_admin_link_dies_for_anyone(cast: Cast) -> None:
    link = team_invitation_create(team=cast.team, created_by=cast.carol, role="admin")
    team_member_set_role(
        membership=membership(cast, cast.carol), role="member", by=membership(cast, cast.alice)
    )
    stranger = make_user("dave")
    with pytest.raises(ValidationError, match="invalid, used or expired"):
        team_invitation_accept(token=link.token, user=stranger)
    assert not Membership.objects.filter(team=cast.team, user=stranger).exists()
    # Carol, now a member, is not upgraded by her old link either.
    response = accept_page(cast, link.token, cast.carol)
    assert response.status_code == 404  # type: ignore[attr-defined]
    assert membership(cast, cast.carol).role == "member"


def test_owner_demoted_to_admin_keeps_admin_links_loses_owner_links(cast: Cast) -> None:
    team_member_set_role(
        membership=membership(cast, cast.carol), role="owner", by=membership(cast, cast.alice)
    )
    owner_link = team_invitation_create(team=cast.team, created_by=cast.alice, role="owner")
    admin_link = team_invitation_create(team=cast.team, created_by=cast.alice, role="admin")
    team_member_set_role(
        membership=membership(cast, cast.alice), role="admin", by=membership(cast, cast.carol)
    )
    dave, erin = make_user("dave"), make_user("erin")
    with pytest.raises(ValidationError, match="invalid, used or expired"):
        team_invitation_accept(token=owner_link.token, user=dave)
    assert team_invitation_accept(token=admin_link.token, user=erin).role == "admin"


def test_link_made_before_revocation_existed_is_checked_at_use(cast: Cast) -> None:
    """A bare UPDATE skips the receivers; accepting still re-checks the creator."""
    link = team_invitation_create(team=cast.team, created_by=cast.carol, role="admin")
    Membership.objects.filter(team=cast.team, user=cast.carol).update(role="member")
    link.invitation.refresh_from_db()
    assert link.invitation.revoked_at is None
    with pytest.raises(ValidationError, match="invalid, used or expired"):
        team_invitation_accept(token=link.token, user=make_user("dave"))


def test_member_cannot_create_an_invitation(cast: Cast) -> None:
    with pytest.raises(RoleDenied, match="Only team owners and admins can invite"):
        team_invitation_create(team=cast.team, created_by=cast.bob, role="member")
    with pytest.raises(RoleDenied, match="Only owners can invite owners"):
        team_invitation_create(team=cast.team, created_by=cast.carol, role="owner")
    response = cast.client_for(cast.bob).post("/accounts/invitations/new/", {"role": "member"})
    assert response.status_code == 403


@override_settings(XROUTER_INVITATION_TTL_HOURS=2)
def test_invitation_expires_after_the_setting(cast: Cast) -> None:
    link = team_invitation_create(team=cast.team, created_by=cast.alice, role="member")
    expected = timezone.now() + timedelta(hours=2)
    assert abs((link.invitation.expires_at - expected).total_seconds()) < 5
    with time_machine.travel(timezone.now() + timedelta(hours=2, minutes=1)):
        with pytest.raises(ValidationError, match="invalid, used or expired"):
            team_invitation_accept(token=link.token, user=make_user("dave"))
