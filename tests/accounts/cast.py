"""A named cast for dashboard and API tests, built through services.

``acme`` (the ``team`` fixture) has alice (owner), carol (admin) and bob
(member); ``globex`` (``other_team``) has mallory (owner). Test modules wrap
:func:`build_cast` in a fixture::

    @pytest.fixture
    def cast(team: Team, other_team: Team) -> Cast:
        return build_cast(team=team, other_team=other_team)
"""

from __future__ import annotations

from dataclasses import dataclass

from django.test import Client

from accounts.models import Membership, Team, User
from accounts.selectors import CURRENT_TEAM_SESSION_KEY
from accounts.services import team_add_member, user_signup
from keys.models import ApiKey
from keys.services import CreatedKey, api_key_create

PASSWORD = "correct horse battery staple 42"


@dataclass
class Cast:
    team: Team
    other_team: Team
    alice: User
    carol: User
    bob: User
    mallory: User
    alice_key: CreatedKey
    mallory_key: CreatedKey

    def client_for(self, user: User, team: Team | None = None) -> Client:
        """Return a logged-in test client with ``team`` (default: theirs) current."""
        client = Client()
        client.force_login(user)
        if team is not None:
            session = client.session
            session[CURRENT_TEAM_SESSION_KEY] = team.pk
            session.save()
        return client


def make_user(username: str) -> User:
    return user_signup(username=username, email=f"{username}@example.com", password=PASSWORD)


def build_cast(*, team: Team, other_team: Team) -> Cast:
    alice, carol, bob, mallory = (make_user(n) for n in ("alice", "carol", "bob", "mallory"))
    team_add_member(team=team, user=alice, role=Membership.Role.OWNER)
    team_add_member(team=team, user=carol, role=Membership.Role.ADMIN)
    team_add_member(team=team, user=bob, role=Membership.Role.MEMBER)
    team_add_member(team=other_team, user=mallory, role=Membership.Role.OWNER)
    return Cast(
        team=team,
        other_team=other_team,
        alice=alice,
        carol=carol,
        bob=bob,
        mallory=mallory,
        alice_key=api_key_create(team=team, name="acme prod", created_by=alice),
        mallory_key=api_key_create(team=other_team, name="globex prod", created_by=mallory),
    )


def management_key(team: Team, name: str = "ci") -> CreatedKey:
    return api_key_create(team=team, name=name, kind=ApiKey.Kind.MANAGEMENT)
