"""OAuth tokens on /v1/ through the gateway, and the OpenRouter key exchange."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.test import Client

from accounts.models import Membership
from accounts.services import team_member_remove
from keys.models import ApiKey
from tests.accounts.cast import Cast
from tests.accounts.oauth.conftest import CHALLENGE, VERIFIER, OAuthClient, post_form
from tests.waiting import wait_until

BODY = {"model": "local/mock", "messages": [{"role": "user", "content": "hi"}]}


def _chat(gateway, token: str, **kwargs) -> requests.Response:
    return requests.post(
        gateway.url + "/v1/chat/completions",
        json=BODY,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
        **kwargs,
    )


def test_chat_token_works_and_revocation_is_fast(gateway, oauth: OAuthClient, cast: Cast) -> None:
    """A chat token calls /v1/ as a hidden oauth key; revoked, it fails within 1 s."""
    tokens = oauth.tokens()
    response = _chat(gateway, tokens["access_token"])
    assert response.status_code == 200, response.text
    hidden = ApiKey.objects.get(kind=ApiKey.Kind.OAUTH)
    assert hidden.team_id == cast.team.pk
    assert hidden.created_by_id == cast.alice.pk
    # Warm again: served from the caches (the principal is the hidden key).
    assert _chat(gateway, tokens["access_token"]).status_code == 200
    revoke = post_form(
        Client(),
        "/oauth/revoke/",
        {"token": tokens["access_token"], "client_id": oauth.app.application.client_id},
    )
    assert revoke.status_code == 200
    wait_until(
        lambda: _chat(gateway, tokens["access_token"]).status_code == 401,
        timeout=1.0,
        what="the revoked token to get 401 (the 1 s revocation bound)",
    )
    error = _chat(gateway, tokens["access_token"]).json()["error"]
    assert set(error) == {"message", "type", "param", "code"}


def test_token_without_chat_scope_refused(gateway, oauth: OAuthClient) -> None:
    """A token lacking the chat scope gets 401 in OpenAI's error shape."""
    tokens = oauth.tokens(scope="usage:read")
    response = _chat(gateway, tokens["access_token"])
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_token_in_query_string_refused(gateway, oauth: OAuthClient) -> None:
    """AUTH-17: a bearer token in the URL is never accepted."""
    tokens = oauth.tokens()
    response = requests.post(
        gateway.url + "/v1/chat/completions?access_token=" + tokens["access_token"],
        json=BODY,
        timeout=10,
    )
    assert response.status_code == 401


def test_user_removed_from_team_loses_access(gateway, oauth: OAuthClient, cast: Cast) -> None:
    """A token of a user removed from the team stops working at once."""
    carol = OAuthClient(cast.client_for(cast.carol, cast.team), oauth.app)
    tokens = carol.tokens()
    assert _chat(gateway, tokens["access_token"]).status_code == 200
    owner = Membership.objects.get(user=cast.alice, team=cast.team)
    team_member_remove(membership=Membership.objects.get(user=cast.carol, team=cast.team), by=owner)
    assert _chat(gateway, tokens["access_token"]).status_code == 401


def test_key_exchange_end_to_end(gateway, cast: Cast) -> None:
    """GET /auth -> approve -> code -> POST /api/v1/auth/keys -> key in the list."""
    browser = cast.client_for(cast.alice, cast.team)
    params = {
        "callback_url": "https://app.example/cb",
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
    }
    page = browser.get("/auth", params)
    assert page.status_code == 200
    assert b"https://app.example" in page.content
    approved = browser.post("/auth", {**params, "allow": "1"})
    assert approved.status_code == 302
    code = parse_qs(urlsplit(approved["Location"]).query)["code"][0]
    exchange = requests.post(
        gateway.url + "/api/v1/auth/keys",
        json={"code": code, "code_verifier": VERIFIER, "code_challenge_method": "S256"},
        timeout=10,
    )
    assert exchange.status_code == 200, exchange.text
    body = exchange.json()
    assert body["user_id"] == str(cast.alice.pk)
    assert body["key"].startswith("xr_")
    assert exchange.headers["Cache-Control"] == "no-store"
    again = requests.post(
        gateway.url + "/api/v1/auth/keys",
        json={"code": code, "code_verifier": VERIFIER, "code_challenge_method": "S256"},
        timeout=10,
    )
    assert again.status_code == 403
    assert _chat(gateway, body["key"]).status_code == 200
    listing = browser.get("/keys/")
    assert b"App: https://app.example" in listing.content
    key = ApiKey.objects.get(name="App: https://app.example")
    assert browser.post(f"/keys/{key.public_id}/revoke/").status_code in (200, 302)
    key.refresh_from_db()
    assert key.revoked_at is not None


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params",
    [
        {
            "callback_url": "http://app.example/cb",
            "code_challenge": CHALLENGE,
            "code_challenge_method": "S256",
        },
        {
            "callback_url": "https://app.example/cb",
            "code_challenge": CHALLENGE,
            "code_challenge_method": "plain",
        },
        {"callback_url": "https://app.example/cb", "code_challenge": CHALLENGE},
        {"callback_url": "https://app.example/cb", "code_challenge_method": "S256"},
        {
            "callback_url": "https://a@evil.tld/cb",
            "code_challenge": CHALLENGE,
            "code_challenge_method": "S256",
        },
    ],
)
def test_key_exchange_bad_requests_not_redirected(cast: Cast, params: dict) -> None:
    """Bad callback, plain or missing method/challenge: an error page, no redirect."""
    response = cast.client_for(cast.alice, cast.team).get("/auth", params)
    assert response.status_code == 400
    assert "Location" not in response


@pytest.mark.django_db
def test_key_exchange_wrong_verifier_burns_code_and_is_throttled(cast: Cast) -> None:
    """A wrong verifier fails and burns the code; repeated attempts get 429."""
    browser = cast.client_for(cast.alice, cast.team)
    params = {
        "callback_url": "http://127.0.0.1:9/cb",
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
    }
    code = parse_qs(urlsplit(browser.post("/auth", {**params, "allow": "1"})["Location"]).query)[
        "code"
    ][0]
    api = Client()
    wrong = api.post(
        "/api/v1/auth/keys",
        {"code": code, "code_verifier": "x" * 43},
        content_type="application/json",
    )
    assert wrong.status_code == 403
    right = api.post(
        "/api/v1/auth/keys",
        {"code": code, "code_verifier": VERIFIER},
        content_type="application/json",
    )
    assert right.status_code == 403
    statuses = [
        api.post(
            "/api/v1/auth/keys",
            {"code": "c", "code_verifier": VERIFIER},
            content_type="application/json",
        ).status_code
        for _ in range(25)
    ]
    assert statuses[-1] == 429
