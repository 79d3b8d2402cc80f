"""The ``usage:read`` OAuth scope on ``GET /api/v1/generation`` (issue 15, Low).

The scope was offered on the consent page but accepted nowhere. A token
with it reads the consented team's records; one without it gets 403
``insufficient_scope``; another team's record is the usual 404.
"""

from __future__ import annotations

from collections.abc import Callable

from django.test import Client

from accounts.oauth.services import oauth_application_register
from routing.usage.records import UsageEvent
from tests.accounts.cast import Cast
from tests.accounts.oauth.conftest import REDIRECT, OAuthClient


def token_for(cast: Cast, scope: str) -> Client:
    app = oauth_application_register(
        name="Usage App", redirect_uris=[REDIRECT], client_type="public", owner=cast.alice
    )
    # bob is a member: usage:read is his to give (README "Roles").
    flow = OAuthClient(browser=cast.client_for(cast.bob, cast.team), app=app)
    token = flow.tokens(scope=scope)["access_token"]
    return Client(headers={"authorization": f"Bearer {token}"})


def test_usage_read_token_reads_its_teams_generation(
    cast: Cast, record_usage: Callable[..., UsageEvent]
) -> None:
    mine = record_usage(team_id=cast.team.pk, key_id=cast.alice_key.api_key.pk)
    theirs = record_usage(team_id=cast.other_team.pk, key_id=cast.mallory_key.api_key.pk)
    client = token_for(cast, "usage:read")
    ok = client.get("/api/v1/generation", {"id": mine.request_id})
    assert ok.status_code == 200, ok.content
    assert ok.json()["data"]["id"] == mine.request_id
    assert ok["Cache-Control"] == "no-store"
    other = client.get("/api/v1/generation", {"id": theirs.request_id})
    assert other.status_code == 404
    assert other.json()["error"]["message"] == "No generation with this id."


def test_token_without_usage_read_is_refused(
    cast: Cast, record_usage: Callable[..., UsageEvent]
) -> None:
    event = record_usage(team_id=cast.team.pk, key_id=cast.alice_key.api_key.pk)
    response = token_for(cast, "keys:read").get("/api/v1/generation", {"id": event.request_id})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "insufficient_scope"
    assert response["WWW-Authenticate"] == (
        'Bearer realm="xrouter", error="insufficient_scope", scope="usage:read"'
    )


def test_usage_read_grants_no_writes_or_keys(cast: Cast) -> None:
    client = token_for(cast, "usage:read")
    assert client.get("/api/v1/keys").json()["error"]["code"] == "insufficient_scope"
