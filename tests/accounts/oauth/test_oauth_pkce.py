"""PKCE (AUTH-01..04): S256 only, required, verifier checked at the token endpoint."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.conf import settings

from accounts.oauth.pkce import s256_challenge
from tests.accounts.oauth.conftest import CHALLENGE, REDIRECT, VERIFIER, OAuthClient

pytestmark = pytest.mark.django_db


def test_appendix_b_vector_byte_for_byte() -> None:
    """The S256 transform reproduces RFC 7636 Appendix B exactly, unpadded."""
    octets = bytes(
        [
            116,
            24,
            223,
            180,
            151,
            153,
            224,
            37,
            79,
            250,
            96,
            125,
            216,
            173,
            187,
            186,
            22,
            212,
            37,
            77,
            105,
            214,
            191,
            240,
            91,
            88,
            5,
            88,
            83,
            132,
            141,
            121,
        ]
    )
    import base64

    assert base64.urlsafe_b64encode(octets).rstrip(b"=").decode() == VERIFIER
    assert s256_challenge(VERIFIER) == CHALLENGE
    assert "=" not in s256_challenge(VERIFIER)


@pytest.mark.django_db(transaction=True)
def test_appendix_b_full_flow_over_http(live_server, oauth: OAuthClient) -> None:
    """Authorize, consent and redeem with the Appendix B pair over real HTTP."""
    http = requests.Session()
    # Reuse the logged-in test client's session cookie in a real HTTP client.
    http.cookies.set(
        settings.SESSION_COOKIE_NAME, oauth.browser.cookies[settings.SESSION_COOKIE_NAME].value
    )
    page = http.get(
        live_server.url + "/oauth/authorize/", params=oauth.authorize_params(), timeout=10
    )
    assert page.status_code == 200
    assert "Notes App" in page.text
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
    assert fields["code_challenge"] == CHALLENGE
    fields["allow"] = "Authorize"
    # CSRF_COOKIE_SECURE keeps the cookie off plain http; resend it by hand.
    csrf_cookie = page.cookies.get(settings.CSRF_COOKIE_NAME)
    http.cookies.set(settings.CSRF_COOKIE_NAME, csrf_cookie)
    approved = http.post(
        live_server.url + "/oauth/authorize/",
        data=fields,
        headers={"Referer": live_server.url + "/oauth/authorize/"},
        allow_redirects=False,
        timeout=10,
    )
    assert approved.status_code == 302, approved.text
    location = approved.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == ["st-123"]
    token = requests.post(
        live_server.url + "/oauth/token/",
        data={
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": REDIRECT,
            "client_id": oauth.app.application.client_id,
            "code_verifier": VERIFIER,
        },
        timeout=10,
    )
    assert token.status_code == 200, token.text
    assert token.headers["Cache-Control"] == "no-store"
    body = token.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "chat"
    assert set(body) >= {"access_token", "refresh_token", "expires_in"}
    assert body["expires_in"] == 900


def _error_redirect(response) -> dict[str, list[str]]:
    assert response.status_code == 302, response.content
    assert response["Location"].startswith(REDIRECT + "?")
    return parse_qs(urlsplit(response["Location"]).query)


@pytest.mark.parametrize(
    "overrides",
    [
        {"code_challenge": None, "code_challenge_method": None},  # no challenge
        {"code_challenge": None},  # method without challenge
        {"code_challenge_method": "plain"},
        {"code_challenge_method": None},  # oauthlib would default to plain
        {"code_challenge": CHALLENGE + "="},  # padded / wrong length
    ],
)
def test_bad_challenge_is_invalid_request_without_code(oauth: OAuthClient, overrides: dict) -> None:
    """AUTH-02/03: a missing challenge, plain or omitted method get invalid_request."""
    query = _error_redirect(oauth.consent_page(**overrides))
    assert query["error"] == ["invalid_request"]
    assert query["state"] == ["st-123"]
    assert "code" not in query


def test_plain_is_refused_on_approval_too(oauth: OAuthClient) -> None:
    """Editing the hidden method to plain between GET and POST issues no code."""
    page = oauth.consent_page()
    form = {k: v for k, v in page.context["form"].initial.items() if v is not None}
    form.update(allow="Authorize", code_challenge_method="plain", code_challenge=VERIFIER)
    response = oauth.browser.post("/oauth/authorize/", form)
    assert "code=" not in response.get("Location", "")


@pytest.mark.parametrize(
    "verifier",
    [
        "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj",  # wrong
        None,  # missing
        "a" * 42,  # too short
        "a" * 129,  # too long
        "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjX+",  # bad charset
    ],
)
def test_bad_verifier_is_invalid_grant_and_burns_code(
    oauth: OAuthClient, verifier: str | None
) -> None:
    """AUTH-04: wrong/missing/short/long/bad-charset verifiers fail with invalid_grant."""
    code = oauth.code()
    response = oauth.redeem(code, verifier)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    # The code is burnt: even the right verifier no longer works.
    assert oauth.redeem(code, VERIFIER).json()["error"] == "invalid_grant"


def test_verifier_of_128_chars_works(oauth: OAuthClient) -> None:
    """The longest legal verifier (128 chars, full alphabet) is accepted."""
    verifier = ("AZaz09-._~" * 13)[:128]
    response = oauth.redeem(oauth.code(code_challenge=s256_challenge(verifier)), verifier)
    assert response.status_code == 200, response.content


def test_pkce_downgrade_is_refused(oauth: OAuthClient, settings) -> None:
    """AUTH-04: a verifier for a code issued without a challenge is rejected."""
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "PKCE_REQUIRED": False}
    from oauth2_provider.models import Grant

    # With PKCE off a client could get a code without a challenge; craft one.
    code = oauth.code()
    Grant.objects.filter(application=oauth.app.application).update(
        code_challenge="", code_challenge_method=""
    )
    response = oauth.redeem(code, VERIFIER)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
