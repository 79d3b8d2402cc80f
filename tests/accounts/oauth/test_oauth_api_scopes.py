"""OAuth access tokens on the management API (``/api/v1/``) and their scopes.

Tokens come from the real authorization-code flow (consent page, token
endpoint, RFC 7636 Appendix B verifier) through :class:`OAuthClient`. The
consent binds the grant to the user's current team through the hidden
``oauth`` key whenever a team-scoped scope is granted; most tests below ask
for ``chat`` too, and
:func:`test_management_only_grant_is_bound_to_the_consent_team` shows a
management scope alone is enough.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import get_access_token_model

from accounts.models import Membership
from accounts.services import team_add_member, team_member_remove
from keys.models import ApiKey
from tests.accounts.cast import Cast, management_key
from tests.accounts.oauth.conftest import OAuthClient, post_form

pytestmark = pytest.mark.django_db

AccessToken = get_access_token_model()

KEYS_URL = "/api/v1/keys"
READ_URLS = (KEYS_URL, "/api/v1/teams/current", "/api/v1/models")


def bearer(token: str) -> Client:
    """Return an API client that sends ``token`` and no session."""
    return Client(headers={"authorization": f"Bearer {token}"})


def access_token(oauth: OAuthClient, scope: str) -> str:
    return str(oauth.tokens(scope=scope)["access_token"])


def send(client: Client, method: str, url: str, body: Any = None) -> Any:
    """Send a JSON request (the API parses JSON bodies only)."""
    kwargs: dict[str, Any] = {"content_type": "application/json"}
    if body is not None:
        kwargs["data"] = json.dumps(body)
    return getattr(client, method)(url, **kwargs)


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "code", "param"}
    assert body["error"]["code"] == code
    assert body["error"]["type"] == "invalid_request_error"
    return dict(body["error"])


def assert_insufficient_scope(response: Any, scope: str | None) -> None:
    assert_error(response, 403, "insufficient_scope")
    challenge = 'Bearer realm="xrouter", error="insufficient_scope"'
    if scope is not None:
        challenge += f', scope="{scope}"'
    assert response["WWW-Authenticate"] == challenge


def assert_invalid_token(response: Any) -> None:
    assert_error(response, 401, "invalid_api_key")
    assert response["WWW-Authenticate"] == 'Bearer realm="xrouter", error="invalid_token"'


def write_attempts(client: Client, key: ApiKey) -> list[Any]:
    url = f"{KEYS_URL}/{key.public_id}"
    return [
        send(client, "post", KEYS_URL, {"name": "by app"}),
        send(client, "patch", url, {"name": "renamed by app"}),
        send(client, "delete", url),
    ]


def test_keys_read_token_reads_but_cannot_write(oauth: OAuthClient, cast: Cast) -> None:
    """keys:read lists, retrieves and reads the team; every write is 403 insufficient_scope."""
    client = bearer(access_token(oauth, "chat keys:read"))
    listing = client.get(KEYS_URL)
    assert listing.status_code == 200, listing.content
    names = {key["name"] for key in listing.json()["data"]}
    assert "acme prod" in names
    assert "globex prod" not in names
    key = cast.alice_key.api_key
    detail = client.get(f"{KEYS_URL}/{key.public_id}")
    assert detail.status_code == 200
    assert detail.json()["data"]["id"] == str(key.public_id)
    team = client.get("/api/v1/teams/current").json()["data"]
    assert (team["slug"], team["role"], team["authenticated_as"]) == ("acme", "owner", "user")
    assert client.get("/api/v1/models").status_code == 200

    before = ApiKey.objects.filter(team=cast.team).count()
    for response in write_attempts(client, key):
        assert_insufficient_scope(response, "keys:write")
    key.refresh_from_db()
    assert (key.name, key.revoked_at) == ("acme prod", None)
    assert ApiKey.objects.filter(team=cast.team).count() == before


def test_keys_write_token_creates_updates_and_revokes(oauth: OAuthClient, cast: Cast) -> None:
    """keys:write may create, change and revoke the team's keys, and read them."""
    client = bearer(access_token(oauth, "chat keys:write"))
    created = send(client, "post", KEYS_URL, {"name": "by app"})
    assert created.status_code == 201, created.content
    assert created.json()["key"].startswith("xr_")
    new_key = ApiKey.objects.get(public_id=created.json()["data"]["id"])
    assert (new_key.team_id, new_key.created_by_id) == (cast.team.pk, cast.alice.pk)
    url = f"{KEYS_URL}/{new_key.public_id}"
    assert client.get(url).status_code == 200
    patched = send(client, "patch", url, {"name": "renamed"})
    assert patched.status_code == 200
    assert patched.json()["data"]["name"] == "renamed"
    assert send(client, "delete", url).json() == {"deleted": True}
    new_key.refresh_from_db()
    assert new_key.revoked_at is not None


def test_chat_only_token_is_refused_on_the_management_api(oauth: OAuthClient, cast: Cast) -> None:
    """A chat token gets 403 insufficient_scope for reads and writes alike."""
    client = bearer(access_token(oauth, "chat"))
    for url in READ_URLS:
        assert_insufficient_scope(client.get(url), "keys:read")
    for response in write_attempts(client, cast.alice_key.api_key):
        assert_insufficient_scope(response, "keys:write")
    # Nor may it read usage: that endpoint does not take OAuth tokens yet.
    assert client.get("/api/v1/generation", {"id": "gen-1"}).status_code in (401, 403)


def test_usage_read_token_cannot_touch_keys(oauth: OAuthClient) -> None:
    """usage:read grants nothing on the keys, team or models endpoints."""
    client = bearer(access_token(oauth, "chat usage:read"))
    for url in READ_URLS:
        assert_insufficient_scope(client.get(url), "keys:read")


def test_other_teams_key_is_404_with_an_oauth_token(oauth: OAuthClient, cast: Cast) -> None:
    """Another team's key id answers 404 to every method, as for unknown ids (API1)."""
    client = bearer(access_token(oauth, "chat keys:write"))
    foreign = cast.mallory_key.api_key
    url = f"{KEYS_URL}/{foreign.public_id}"
    for response in (
        client.get(url),
        send(client, "patch", url, {"name": "pwned"}),
        send(client, "delete", url),
    ):
        assert_error(response, 404, "not_found")
    foreign.refresh_from_db()
    assert (foreign.name, foreign.revoked_at) == ("globex prod", None)


def test_token_acts_for_the_consent_team_not_the_session_team(
    oauth: OAuthClient, cast: Cast
) -> None:
    """Switching the dashboard's current team later does not move the token."""
    team_add_member(team=cast.other_team, user=cast.alice, role=Membership.Role.OWNER)
    client = bearer(access_token(oauth, "chat keys:read"))
    cast.client_for(cast.alice, cast.other_team)  # globex becomes alice's current team
    names = {key["name"] for key in client.get(KEYS_URL).json()["data"]}
    assert "acme prod" in names
    assert "globex prod" not in names


def test_token_never_exceeds_the_users_role(oauth: OAuthClient, cast: Cast) -> None:
    """A keys:write token stops working the moment its user's role falls short.

    The role is lowered with a bare UPDATE, which skips the revocation that
    a demotion through any service or the admin triggers: the resolver
    still reads the role itself and refuses the token.
    """
    carol = OAuthClient(cast.client_for(cast.carol, cast.team), oauth.app)
    client = bearer(access_token(carol, "keys:write"))
    assert client.get(KEYS_URL).status_code == 200
    Membership.objects.filter(user=cast.carol, team=cast.team).update(role=Membership.Role.MEMBER)
    assert_invalid_token(client.get(KEYS_URL))
    for response in write_attempts(client, cast.alice_key.api_key):
        assert_invalid_token(response)


@pytest.mark.parametrize("how", ["rfc7009", "dashboard"])
def test_revoked_token_gets_401_on_the_next_request(
    oauth: OAuthClient, cast: Cast, how: str
) -> None:
    """Revocation at /oauth/revoke/ or in the dashboard takes effect at once."""
    token = access_token(oauth, "chat keys:read")
    client = bearer(token)
    assert client.get(KEYS_URL).status_code == 200
    if how == "rfc7009":
        revoked = post_form(
            Client(),
            "/oauth/revoke/",
            {"token": token, "client_id": oauth.app.application.client_id},
        )
    else:
        revoked = oauth.browser.post(f"/oauth/authorized/{oauth.app.application.pk}/revoke/")
    assert revoked.status_code in (200, 302)
    assert_invalid_token(client.get(KEYS_URL))


def test_removed_user_deactivated_user_and_expired_token_get_401(
    oauth: OAuthClient, cast: Cast
) -> None:
    """Leaving the team, losing the account or token expiry each end access."""
    carol = OAuthClient(cast.client_for(cast.carol, cast.team), oauth.app)
    removed = bearer(access_token(carol, "chat keys:read"))
    assert removed.get(KEYS_URL).status_code == 200
    owner = Membership.objects.get(user=cast.alice, team=cast.team)
    team_member_remove(membership=Membership.objects.get(user=cast.carol, team=cast.team), by=owner)
    assert_invalid_token(removed.get(KEYS_URL))

    bob = OAuthClient(cast.client_for(cast.bob, cast.team), oauth.app)
    deactivated = bearer(access_token(bob, "keys:read"))
    cast.bob.is_active = False
    cast.bob.save(update_fields=["is_active"])
    assert_invalid_token(deactivated.get(KEYS_URL))

    token = access_token(oauth, "chat keys:read")
    AccessToken.objects.filter(user=cast.alice).update(
        expires=timezone.now() - timedelta(seconds=1)
    )
    assert_invalid_token(bearer(token).get(KEYS_URL))


@pytest.mark.parametrize("header", ["Bearer not-a-token", "Bearer " + "a" * 600])
def test_unknown_token_gets_401_invalid_token(cast: Cast, header: str) -> None:
    """An unknown bearer value gets the uniform 401 with RFC 6750's challenge."""
    assert_invalid_token(Client(headers={"authorization": header}).get(KEYS_URL))


def test_token_in_query_string_is_ignored(oauth: OAuthClient) -> None:
    """Only the Authorization header carries a token (RFC 9700 2.6)."""
    token = access_token(oauth, "chat keys:read")
    response = Client().get(KEYS_URL, {"access_token": token})
    assert_error(response, 401, "invalid_api_key")
    assert response["WWW-Authenticate"] == 'Bearer realm="xrouter"'


def test_management_key_and_session_still_work(cast: Cast) -> None:
    """The OAuth class passes xr_ keys and sessions on unchanged."""
    mgmt = bearer(management_key(cast.team).plaintext)
    assert mgmt.get("/api/v1/teams/current").json()["data"]["authenticated_as"] == (
        "management_key"
    )
    assert send(mgmt, "post", KEYS_URL, {"name": "by script"}).status_code == 201
    session = cast.client_for(cast.alice, cast.team)
    assert session.get("/api/v1/teams/current").json()["data"]["authenticated_as"] == "user"
    standard = bearer(cast.alice_key.plaintext)
    assert_error(standard.get(KEYS_URL), 401, "invalid_api_key")


def test_schema_documents_oauth_with_per_operation_scopes(cast: Cast) -> None:
    """/api/schema/ lists the oauth2 scheme and the scope each operation needs."""
    response = Client().get("/api/schema/", headers={"accept": "application/json"})
    assert response.status_code == 200
    schema = json.loads(response.content)
    scheme = schema["components"]["securitySchemes"]["oauth2"]
    flow = scheme["flows"]["authorizationCode"]
    assert scheme["type"] == "oauth2"
    assert (flow["authorizationUrl"], flow["tokenUrl"]) == ("/oauth/authorize/", "/oauth/token/")
    assert set(flow["scopes"]) == {"keys:read", "keys:write", "usage:read"}
    assert "managementKey" in schema["components"]["securitySchemes"]
    operations = {
        op["operationId"]: op["security"]
        for path in schema["paths"].values()
        for op in path.values()
        if isinstance(op, dict) and "operationId" in op
    }
    assert {"oauth2": ["keys:read"]} in operations["keys_list"]
    assert {"oauth2": ["keys:read"]} in operations["teams_current"]
    for operation in ("keys_create", "keys_update", "keys_delete"):
        assert {"oauth2": ["keys:write"]} in operations[operation]


def test_management_only_grant_is_bound_to_the_consent_team(oauth: OAuthClient) -> None:
    """A keys:read grant without chat works for the team shown at consent."""
    response = bearer(access_token(oauth, "keys:read")).get(KEYS_URL)
    assert response.status_code == 200, response.content


def test_app_ready_connects_the_token_eviction_receivers() -> None:
    """Without the URLconf (shell, Celery), deleting a token still evicts it."""
    script = textwrap.dedent(
        """
        import sys

        import django
        from django.db import DatabaseError
        from django.db.models.signals import post_delete

        django.setup()
        assert "accounts.oauth.views" not in sys.modules, "the URLconf was loaded"
        tokens = sys.modules.get("accounts.oauth.tokens")
        assert tokens is not None, "AccountsConfig.ready() did not load the resolver"
        from oauth2_provider.models import get_access_token_model

        AccessToken = get_access_token_model()
        checksum = "c" * 64
        tokens._tokens.local[checksum] = (float("inf"), "-")
        try:
            post_delete.send(sender=AccessToken, instance=AccessToken(token_checksum=checksum))
        except DatabaseError:
            pass  # the after-commit eviction needs a database; the first one has run
        print("evicted" if checksum not in tokens._tokens.local else "kept")
        """
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    root = Path(__file__).resolve().parents[3]
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "evicted"
