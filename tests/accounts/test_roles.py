"""The role matrix, enforced on every path that creates a credential.

Issue 15 (High 2): a member minted non-expiring keys through ``/auth`` and
``POST /api/v1/auth/keys``, got model access by consenting an app for
``chat``, and kept both after being removed. Each test below sends one of
those attacks and checks the refusal and its message, or that a removal or
demotion revoked what the new role no longer allows.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.cache import cache
from django.test import Client
from oauth2_provider.models import get_access_token_model, get_refresh_token_model

from accounts import roles
from accounts.models import Membership, Team
from accounts.oauth.services import RegisteredApp, oauth_application_register
from accounts.oauth.tokens import clear_local_cache, resolve_oauth_token
from accounts.services import team_leave, team_member_remove, team_member_set_role
from keys import auth
from keys.models import ApiKey
from keys.services import api_key_create
from tests.accounts.cast import Cast, build_cast
from tests.accounts.oauth.conftest import CHALLENGE, REDIRECT, VERIFIER, OAuthClient
from xrouter_site.errors import AuthenticationFailed

pytestmark = pytest.mark.django_db

AccessToken = get_access_token_model()
RefreshToken = get_refresh_token_model()
README = Path(__file__).resolve().parents[2] / "README.md"
EXCHANGE = {
    "callback_url": "https://app.example/cb",
    "code_challenge": CHALLENGE,
    "code_challenge_method": "S256",
}


@pytest.fixture
def cast(team: Team, other_team: Team) -> Cast:
    return build_cast(team=team, other_team=other_team)


@pytest.fixture
def app(cast: Cast) -> RegisteredApp:
    return oauth_application_register(
        name="Notes App", redirect_uris=[REDIRECT], client_type="public", owner=cast.alice
    )


@pytest.fixture(autouse=True)
def _fresh_tokens() -> Any:
    clear_local_cache()
    yield
    clear_local_cache()


def membership(cast: Cast, user: Any) -> Membership:
    return Membership.objects.get(team=cast.team, user=user)


def key_works(plaintext: str) -> bool:
    auth.clear_local_cache()
    try:
        auth.resolve_key(plaintext)
    except AuthenticationFailed:
        return False
    return True


def token_works(token: str) -> bool:
    clear_local_cache()
    try:
        resolve_oauth_token(token)
    except AuthenticationFailed:
        return False
    return True


def exchange_code(browser: Client) -> str:
    approved = browser.post("/auth", {**EXCHANGE, "allow": "1"})
    assert approved.status_code == 302, approved.content
    return parse_qs(urlsplit(approved["Location"]).query)["code"][0]


def redeem(code: str) -> Any:
    return Client().post(
        "/api/v1/auth/keys",
        json.dumps({"code": code, "code_verifier": VERIFIER, "code_challenge_method": "S256"}),
        content_type="application/json",
    )


def chat_token(cast: Cast, user: Any, app: RegisteredApp, scope: str = "chat") -> str:
    client = OAuthClient(browser=cast.client_for(user, cast.team), app=app)
    return str(client.tokens(scope=scope)["access_token"])


# --- the matrix itself --------------------------------------------------------------


def test_readme_role_table_is_the_enforced_matrix() -> None:
    """README's "Roles" table lists every action with exactly the enforced roles."""
    text = README.read_text(encoding="utf-8")
    section = text.split("### Roles", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| `([a-z_.:]+)` \|(.*)\|\s*$", section, flags=re.MULTILINE)
    documented = {}
    for action, cells in rows:
        marks = [cell.strip() for cell in cells.split("|")][:3]
        documented[action] = frozenset(
            role for role, mark in zip(("owner", "admin", "member"), marks, strict=True) if mark
        )
    assert documented == {action.value: allowed for action, allowed in roles.MATRIX.items()}


def test_member_may_consent_only_to_read_scopes() -> None:
    assert roles.consentable_scopes("member") == {"keys:read", "usage:read"}
    assert roles.consentable_scopes("admin") == set(roles.CONSENT_ACTIONS)
    assert roles.consentable_scopes(None) == frozenset()


# --- members cannot mint credentials, on every path -------------------------------------


def test_member_cannot_create_a_key_over_rest(cast: Cast) -> None:
    response = cast.client_for(cast.bob, cast.team).post(
        "/api/v1/keys", json.dumps({"name": "mine"}), content_type="application/json"
    )
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "permission_denied"
    assert error["message"] == "Only team owners and admins can create keys."
    assert not ApiKey.objects.filter(created_by=cast.bob).exists()


def test_member_cannot_create_a_key_in_the_dashboard(cast: Cast) -> None:
    response = cast.client_for(cast.bob, cast.team).post("/keys/new/", {"name": "mine"})
    assert response.status_code == 403
    assert not ApiKey.objects.filter(created_by=cast.bob).exists()


def test_service_refuses_a_member_and_an_outsider(cast: Cast) -> None:
    """The service is the one check: no view can forget it."""
    with pytest.raises(roles.RoleDenied, match="Only team owners and admins can create keys"):
        api_key_create(team=cast.team, name="sneaky", created_by=cast.bob)
    with pytest.raises(roles.RoleDenied):
        api_key_create(team=cast.team, name="sneaky", created_by=cast.mallory)
    assert not ApiKey.objects.filter(name="sneaky").exists()


def test_member_is_refused_the_key_exchange_before_consent(cast: Cast) -> None:
    browser = cast.client_for(cast.bob, cast.team)
    page = browser.get("/auth", EXCHANGE)
    assert page.status_code == 403
    assert b"Only team owners and admins can create keys." in page.content
    refused = browser.post("/auth", {**EXCHANGE, "allow": "1"})
    assert refused.status_code == 403
    assert "Location" not in refused


def test_code_from_an_admin_is_void_once_they_are_demoted(cast: Cast) -> None:
    """The exchange re-checks the role at redemption: a demotion voids the code."""
    code = exchange_code(cast.client_for(cast.carol, cast.team))
    team_member_set_role(
        membership=membership(cast, cast.carol),
        role=Membership.Role.MEMBER,
        by=membership(cast, cast.alice),
    )
    response = redeem(code)
    assert response.status_code == 403
    assert response.json()["error"] == {
        "message": "Only team owners and admins can create keys.",
        "type": "invalid_request_error",
        "param": None,
        "code": "permission_denied",
    }
    assert not ApiKey.objects.filter(created_by=cast.carol, name__startswith="App:").exists()


def test_admin_exchange_still_issues_a_key(cast: Cast) -> None:
    response = redeem(exchange_code(cast.client_for(cast.carol, cast.team)))
    assert response.status_code == 200, response.content
    assert key_works(response.json()["key"])


@pytest.mark.parametrize("scope", ["chat", "keys:write", "keys:read chat"])
def test_member_cannot_consent_model_or_write_access(
    cast: Cast, app: RegisteredApp, scope: str
) -> None:
    """The consent page is never shown: the app gets access_denied, no code."""
    bob = OAuthClient(browser=cast.client_for(cast.bob, cast.team), app=app)
    response = bob.consent_page(scope=scope)
    assert response.status_code == 302
    query = parse_qs(urlsplit(response["Location"]).query)
    assert query["error"] == ["access_denied"]
    assert "code" not in query
    assert query["state"] == ["st-123"]
    assert "Only team owners and admins" in query["error_description"][0]
    assert not ApiKey.objects.filter(kind=ApiKey.Kind.OAUTH, created_by=cast.bob).exists()


def test_member_consent_post_with_edited_scope_is_refused(cast: Cast, app: RegisteredApp) -> None:
    """A member shown a keys:read page who edits the hidden scope to chat gets 403."""
    bob = OAuthClient(browser=cast.client_for(cast.bob, cast.team), app=app)
    page = bob.consent_page(scope="keys:read")
    assert page.status_code == 200
    form = {k: v for k, v in page.context["form"].initial.items() if v is not None}
    form.update(allow="Authorize", scope="chat")
    response = bob.browser.post("/oauth/authorize/", form)
    assert response.status_code == 403
    assert b"Only team owners and admins can give an app access to the models." in (
        response.content
    )
    assert not AccessToken.objects.filter(user=cast.bob).exists()


def test_member_may_consent_to_read_scopes(cast: Cast, app: RegisteredApp) -> None:
    token = chat_token(cast, cast.bob, app, scope="keys:read usage:read")
    listing = Client(headers={"authorization": f"Bearer {token}"}).get("/api/v1/keys")
    assert listing.status_code == 200


def test_chat_token_of_a_member_from_before_the_fix_is_refused(
    cast: Cast, app: RegisteredApp
) -> None:
    """A chat token a member holds (issued before the matrix) does not resolve."""
    token = chat_token(cast, cast.carol, app)
    assert token_works(token)
    # A bare UPDATE: no revocation receiver runs, as for rows from before
    # the fix; nothing cached from before survives a deploy either.
    Membership.objects.filter(team=cast.team, user=cast.carol).update(role="member")
    cache.clear()
    assert not token_works(token)


# --- removing or demoting revokes what the new role does not allow ----------------------


def _carol_credentials(cast: Cast, app: RegisteredApp) -> tuple[str, str, str]:
    rest = cast.client_for(cast.carol, cast.team).post(
        "/api/v1/keys", json.dumps({"name": "carol rest"}), content_type="application/json"
    )
    assert rest.status_code == 201, rest.content
    dashboard_key = api_key_create(team=cast.team, name="carol dash", created_by=cast.carol)
    token = chat_token(cast, cast.carol, app)
    assert key_works(rest.json()["key"]) and key_works(dashboard_key.plaintext)
    assert token_works(token)
    return rest.json()["key"], dashboard_key.plaintext, token


def _assert_all_revoked(cast: Cast, app: RegisteredApp, creds: tuple[str, str, str]) -> None:
    rest_key, dashboard_key, token = creds
    assert not key_works(rest_key)
    assert not key_works(dashboard_key)
    assert not token_works(token)
    assert not AccessToken.objects.filter(user=cast.carol, application=app.application).exists()
    assert not RefreshToken.objects.filter(
        user=cast.carol, application=app.application, revoked__isnull=True
    ).exists()
    # Nobody else's credentials were touched.
    assert key_works(cast.alice_key.plaintext)
    assert key_works(cast.mallory_key.plaintext)


def test_demotion_to_member_revokes_keys_and_chat_consent(cast: Cast, app: RegisteredApp) -> None:
    creds = _carol_credentials(cast, app)
    team_member_set_role(
        membership=membership(cast, cast.carol),
        role=Membership.Role.MEMBER,
        by=membership(cast, cast.alice),
    )
    _assert_all_revoked(cast, app, creds)


def test_removal_revokes_keys_and_consents(cast: Cast, app: RegisteredApp) -> None:
    creds = _carol_credentials(cast, app)
    team_member_remove(membership=membership(cast, cast.carol), by=membership(cast, cast.alice))
    _assert_all_revoked(cast, app, creds)


def test_leaving_revokes_keys_and_consents(cast: Cast, app: RegisteredApp) -> None:
    creds = _carol_credentials(cast, app)
    team_leave(membership=membership(cast, cast.carol))
    _assert_all_revoked(cast, app, creds)


def test_removal_in_django_admin_revokes_too(cast: Cast, app: RegisteredApp) -> None:
    creds = _carol_credentials(cast, app)
    cast.alice.is_staff = cast.alice.is_superuser = True
    cast.alice.save()
    admin = cast.client_for(cast.alice)
    target = membership(cast, cast.carol)
    response = admin.post(
        f"/admin/accounts/membership/{target.pk}/delete/", {"post": "yes"}, follow=False
    )
    assert response.status_code == 302
    _assert_all_revoked(cast, app, creds)


def test_demotion_owner_to_admin_keeps_keys_and_read_consent(
    cast: Cast, app: RegisteredApp
) -> None:
    """Only what the new role cannot hold goes: an admin still holds keys and chat."""
    token = chat_token(cast, cast.alice, app)
    team_member_set_role(
        membership=membership(cast, cast.carol),
        role=Membership.Role.OWNER,
        by=membership(cast, cast.alice),
    )
    team_member_set_role(
        membership=membership(cast, cast.alice),
        role=Membership.Role.ADMIN,
        by=membership(cast, cast.carol),
    )
    assert key_works(cast.alice_key.plaintext)
    assert token_works(token)


def test_demotion_keeps_read_only_consent(cast: Cast, app: RegisteredApp) -> None:
    token = chat_token(cast, cast.carol, app, scope="keys:read")
    team_member_set_role(
        membership=membership(cast, cast.carol),
        role=Membership.Role.MEMBER,
        by=membership(cast, cast.alice),
    )
    listing = Client(headers={"authorization": f"Bearer {token}"}).get("/api/v1/keys")
    assert listing.status_code == 200


def test_rotation_by_a_staying_admin_keeps_the_key_alive(cast: Cast) -> None:
    """The documented way to keep a leaving member's key: rotate it first."""
    carols = api_key_create(team=cast.team, name="shared", created_by=cast.carol)
    rotated = cast.client_for(cast.alice, cast.team).post(
        f"/keys/{carols.api_key.public_id}/rotate/"
    )
    assert rotated.status_code == 200
    new_key = ApiKey.objects.get(name="shared", revoked_at__isnull=True)
    assert new_key.created_by == cast.alice
    team_member_remove(membership=membership(cast, cast.carol), by=membership(cast, cast.alice))
    new_key.refresh_from_db()
    assert new_key.revoked_at is None


def test_rotating_a_hidden_oauth_key_is_a_clear_refusal_not_a_500(
    cast: Cast, app: RegisteredApp
) -> None:
    chat_token(cast, cast.alice, app)
    hidden = ApiKey.objects.get(kind=ApiKey.Kind.OAUTH, created_by=cast.alice)
    alice = cast.client_for(cast.alice, cast.team)
    response = alice.post(f"/keys/{hidden.public_id}/rotate/", follow=True)
    assert response.status_code == 200
    assert b"no secret to rotate" in response.content
    hidden.refresh_from_db()
    assert hidden.revoked_at is None
