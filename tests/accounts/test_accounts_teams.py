"""Teams: creation, switching, invitations, roles, leaving and removal."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone

from accounts import services
from accounts.models import Invitation, Membership, Team
from accounts.selectors import CURRENT_TEAM_SESSION_KEY
from tests.accounts.cast import Cast, build_cast, make_user


@pytest.fixture
def cast(team: Team, other_team: Team) -> Cast:
    return build_cast(team=team, other_team=other_team)


def membership(cast: Cast, user: object, team: Team | None = None) -> Membership:
    return Membership.objects.get(team=team or cast.team, user=user)


def test_create_team_makes_owner_and_switches(cast: Cast) -> None:
    """A new team has its creator as owner and becomes the current team."""
    client = cast.client_for(cast.bob)
    response = client.post("/accounts/teams/", {"name": "Acme"})  # name taken, slug made unique
    assert response["Location"] == "/"
    new = Team.objects.exclude(pk=cast.team.pk).get(name="Acme")
    assert new.slug != "acme" and new.slug.startswith("acme-")
    assert membership(cast, cast.bob, new).role == Membership.Role.OWNER
    assert client.session[CURRENT_TEAM_SESSION_KEY] == new.pk
    assert client.post("/accounts/teams/", {"name": ""}).status_code == 200
    assert client.post("/accounts/teams/", {"name": "x" * 101}).status_code == 200


def test_switch_team(cast: Cast) -> None:
    """Users switch between their teams; a foreign team id is 404."""
    services.team_add_member(team=cast.other_team, user=cast.bob)
    client = cast.client_for(cast.bob)
    assert client.get("/").context["request"].membership.team == cast.team
    client.post("/accounts/teams/switch/", {"team": cast.other_team.pk})
    assert client.get("/").context["request"].membership.team == cast.other_team

    alice = cast.client_for(cast.alice)
    assert alice.post("/accounts/teams/switch/", {"team": cast.other_team.pk}).status_code == 404
    assert alice.post("/accounts/teams/switch/", {"team": "x"}).status_code == 404
    assert alice.get("/").context["request"].membership.team == cast.team


def test_invitation_link_is_single_use(cast: Cast) -> None:
    """An owner's link adds one person with its role and then stops working."""
    response = cast.client_for(cast.alice).post(
        "/accounts/invitations/new/", {"role": "admin", "email": ""}
    )
    link = response.context["new_link"]
    path = link.removeprefix("http://testserver")
    assert Invitation.objects.get().token_hash not in link

    dana = make_user("dana")
    anonymous = Client()
    assert "Log in" in anonymous.get(path).content.decode()
    assert anonymous.post(path).status_code == 200  # shows the page, joins nobody
    client = Client()
    client.force_login(dana)
    assert client.get(path).status_code == 200
    assert client.post(path)["Location"] == "/"
    assert membership(cast, dana).role == Membership.Role.ADMIN

    erin = make_user("erin")
    client = Client()
    client.force_login(erin)
    assert client.get(path).status_code == 404
    assert client.post(path).status_code == 404
    assert not Membership.objects.filter(user=erin).exists()


def test_expired_and_revoked_invitations_fail(cast: Cast) -> None:
    """Expired or revoked links are refused like unknown ones."""
    dana = make_user("dana")
    client = Client()
    client.force_login(dana)
    expired = services.team_invitation_create(team=cast.team, created_by=cast.alice)
    Invitation.objects.filter(pk=expired.invitation.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert client.post(f"/accounts/invite/{expired.token}/").status_code == 404
    revoked = services.team_invitation_create(team=cast.team, created_by=cast.alice)
    owner = cast.client_for(cast.alice)
    owner.post(f"/accounts/invitations/{revoked.invitation.public_id}/revoke/")
    assert client.post(f"/accounts/invite/{revoked.token}/").status_code == 404
    assert client.post("/accounts/invite/made-up-token/").status_code == 404
    assert not Membership.objects.filter(user=dana).exists()


def test_only_managers_invite_and_admins_cannot_make_owners(cast: Cast) -> None:
    """Members cannot invite; admins invite members and admins but not owners."""
    assert (
        cast.client_for(cast.bob).post("/accounts/invitations/new/", {"role": "member"}).status_code
        == 403
    )
    carol = cast.client_for(cast.carol)
    assert carol.post("/accounts/invitations/new/", {"role": "owner"}).status_code == 400
    assert carol.post("/accounts/invitations/new/", {"role": "admin"}).status_code == 200
    assert list(Invitation.objects.values_list("role", flat=True)) == ["admin"]


def test_other_teams_invitation_cannot_be_revoked(cast: Cast) -> None:
    """Invitation ids of another team are 404."""
    theirs = services.team_invitation_create(team=cast.other_team, created_by=cast.mallory)
    client = cast.client_for(cast.alice)
    url = f"/accounts/invitations/{theirs.invitation.public_id}/revoke/"
    assert client.post(url).status_code == 404
    theirs.invitation.refresh_from_db()
    assert theirs.invitation.revoked_at is None


def test_last_owner_cannot_leave(cast: Cast) -> None:
    """The only owner is told to hand over first; a member can leave."""
    client = cast.client_for(cast.alice)
    response = client.post("/accounts/leave/", follow=True)
    assert "last owner" in response.content.decode()
    assert Membership.objects.filter(team=cast.team, user=cast.alice).exists()

    bob = cast.client_for(cast.bob)
    assert bob.post("/accounts/leave/")["Location"] == "/accounts/teams/"
    assert not Membership.objects.filter(team=cast.team, user=cast.bob).exists()

    services.team_member_set_role(
        membership=membership(cast, cast.carol), role="owner", by=membership(cast, cast.alice)
    )
    client.post("/accounts/leave/")
    assert not Membership.objects.filter(team=cast.team, user=cast.alice).exists()


def test_remove_members_by_role(cast: Cast) -> None:
    """Admins remove members; only owners remove owners; members remove nobody."""
    bob = cast.client_for(cast.bob)
    assert (
        bob.post(f"/accounts/members/{membership(cast, cast.carol).pk}/remove/").status_code == 403
    )

    carol = cast.client_for(cast.carol)
    response = carol.post(
        f"/accounts/members/{membership(cast, cast.alice).pk}/remove/", follow=True
    )
    assert "Only an owner" in response.content.decode()
    assert Membership.objects.filter(team=cast.team, user=cast.alice).exists()

    carol.post(f"/accounts/members/{membership(cast, cast.bob).pk}/remove/")
    assert not Membership.objects.filter(team=cast.team, user=cast.bob).exists()

    # Another team's membership id is 404, and nothing happens.
    theirs = membership(cast, cast.mallory, cast.other_team)
    assert carol.post(f"/accounts/members/{theirs.pk}/remove/").status_code == 404
    assert Membership.objects.filter(pk=theirs.pk).exists()


def test_role_changes(cast: Cast) -> None:
    """Owners change roles; admins cannot grant owner; the last owner stays owner."""
    alice_m, carol_m, bob_m = (membership(cast, u) for u in (cast.alice, cast.carol, cast.bob))
    carol = cast.client_for(cast.carol)
    carol.post(f"/accounts/members/{bob_m.pk}/role/", {"role": "owner"})
    bob_m.refresh_from_db()
    assert bob_m.role == "member"
    carol.post(f"/accounts/members/{bob_m.pk}/role/", {"role": "admin"})
    bob_m.refresh_from_db()
    assert bob_m.role == "admin"
    with pytest.raises(ValidationError, match="last owner"):
        services.team_member_set_role(membership=alice_m, role="member", by=alice_m)
    with pytest.raises(ValidationError, match="Unknown role"):
        services.team_member_set_role(membership=carol_m, role="god", by=alice_m)


def test_members_page(cast: Cast) -> None:
    """Members see the member list but no invitation form or role controls."""
    html = cast.client_for(cast.bob).get("/accounts/members/").content.decode()
    assert "alice" in html and "carol" in html and "mallory" not in html
    assert "Invite someone" not in html and "/remove/" not in html
    assert "alice@example.com" not in html
    html = cast.client_for(cast.alice).get("/accounts/members/").content.decode()
    assert "Invite someone" in html and "/remove/" in html
