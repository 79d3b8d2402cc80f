"""Redirect URIs, grants, codes, refresh rotation (AUTH-05..11, 13)."""

from __future__ import annotations

import threading
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application, Grant, RefreshToken

from accounts.oauth.forms import validate_redirect_uri
from accounts.oauth.services import oauth_application_register
from tests.accounts.cast import Cast
from tests.accounts.oauth.conftest import REDIRECT, VERIFIER, OAuthClient, post_form

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example/cb/",
        "https://app.example/cb?x=1",
        "https://app.example/cb?",
        "https://app.example/CB",
        "https://app.example/cb/extra",
        "https://app.example:8443/cb",
        "http://app.example/cb",
        "https://app.example/cb#frag",
        "https://app.example/cb#",
        "https://app.example@evil.tld/cb",
        "https://evil.tld@app.example/cb",
        "https://app.example/c%62",
        "https://app.example/cb%2F",
        "https://app%2Eexample/cb",
        "https://app.example/cb;x=1",
        "https://evil.tld/cb",
    ],
)
def test_redirect_variants_refused_without_redirect(oauth: OAuthClient, uri: str) -> None:
    """AUTH-05: every near-miss gets an error page, never a redirect."""
    response = oauth.consent_page(redirect_uri=uri)
    assert response.status_code == 400
    assert "Location" not in response
    assert b"invalid_request" in response.content or b"Mismatching" in response.content


def test_token_redirect_uri_must_equal_authorization_one(oauth: OAuthClient) -> None:
    """AUTH-05: the token request's redirect_uri must be the authorization one."""
    code = oauth.code()
    response = oauth.redeem(code, VERIFIER, redirect_uri=REDIRECT + "/")
    assert response.status_code == 400
    assert response.json()["error"] in {"invalid_grant", "invalid_request"}


@pytest.mark.parametrize(
    "uri, ok",
    [
        ("https://app.example/cb", True),
        ("http://127.0.0.1/cb", True),
        ("http://127.0.0.1:51234/cb", True),
        ("http://[::1]:8080/cb", True),
        ("http://app.example/cb", False),
        ("http://localhost:8080/cb", False),
        ("https://*.example/cb", False),
        ("https://u:p@app.example/cb", False),
        ("https://app.example/cb#x", False),
        ("myapp:/cb", False),
    ],
)
def test_registration_schemes_outside_debug(uri: str, ok: bool) -> None:
    """AUTH-06: https only, plus loopback IP literals over http (RFC 8252)."""
    if ok:
        assert validate_redirect_uri(uri) == uri
    else:
        with pytest.raises(ValidationError):
            validate_redirect_uri(uri)


def test_model_clean_rejects_http(cast: Cast) -> None:
    """AUTH-06: DOT's Application.clean() refuses http outside DEBUG."""
    app = Application(
        name="x",
        redirect_uris="http://app.example/cb",
        client_type="public",
        authorization_grant_type="authorization-code",
    )
    with pytest.raises(ValidationError, match="redirect"):
        app.clean()


def test_loopback_any_port_redirects(cast: Cast) -> None:
    """RFC 8252 7.3: a loopback registration accepts any port at request time."""
    app = oauth_application_register(
        name="CLI", redirect_uris=["http://127.0.0.1/cb"], client_type="public", owner=cast.alice
    )
    client = OAuthClient(cast.client_for(cast.alice, cast.team), app, "http://127.0.0.1:53682/cb")
    response = client.approve()
    assert response.status_code == 302
    assert response["Location"].startswith("http://127.0.0.1:53682/cb?code=")
    assert (
        client.redeem(parse_qs(urlsplit(response["Location"]).query)["code"][0]).status_code == 200
    )


def test_implicit_and_password_refused(oauth: OAuthClient, cast: Cast) -> None:
    """AUTH-07: response_type=token and grant_type=password are refused."""
    response = oauth.consent_page(response_type="token")
    query = parse_qs(urlsplit(response["Location"]).query)
    assert query["error"] == ["unsupported_response_type"]
    assert "#" not in response["Location"]
    password = oauth.token({"grant_type": "password", "username": "alice", "password": "x"})
    assert password.status_code == 400
    assert password.json()["error"] == "unsupported_grant_type"


def test_state_passed_through_and_csrf_required(oauth: OAuthClient) -> None:
    """AUTH-08: state comes back unchanged; the consent POST needs a CSRF token."""
    assert oauth.code(state="a b/c+d") is not None
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.cookies = oauth.browser.cookies
    page = oauth.consent_page()
    form = {k: v for k, v in page.context["form"].initial.items() if v is not None}
    form["allow"] = "Authorize"
    assert csrf_client.post("/oauth/authorize/", form).status_code == 403


def test_code_single_use_and_reuse_revokes(oauth: OAuthClient) -> None:
    """AUTH-09: second redemption is invalid_grant and revokes what the first issued."""
    code = oauth.code()
    first = oauth.redeem(code)
    assert first.status_code == 200
    tokens = first.json()
    second = oauth.redeem(code)
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"
    assert not AccessToken.objects.exists()
    assert RefreshToken.objects.get().revoked is not None
    assert oauth.refresh(tokens["refresh_token"]).json()["error"] == "invalid_grant"


@pytest.mark.django_db(transaction=True)
def test_parallel_redemptions_one_wins(oauth: OAuthClient) -> None:
    """AUTH-09: two concurrent redemptions of one code: exactly one 200."""
    code = oauth.code()
    barrier = threading.Barrier(2)
    results: list[int] = []

    def redeem() -> None:
        barrier.wait()
        try:
            results.append(oauth.redeem(code).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=redeem) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [200, 400]


def test_code_expires_after_60_seconds(oauth: OAuthClient) -> None:
    """AUTH-10: a code redeemed at +61 s fails with invalid_grant."""
    with time_machine.travel(timezone.now(), tick=False) as clock:
        code = oauth.code()
        clock.shift(61)
        response = oauth.redeem(code)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_code_bound_to_client(oauth: OAuthClient, other_app) -> None:
    """AUTH-10: app B cannot redeem app A's code, and A still can."""
    code = oauth.code()
    thief = OAuthClient(oauth.browser, other_app)
    response = thief.redeem(code)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert oauth.redeem(code).status_code == 200


def test_refresh_rotation_and_reuse_revokes_family(oauth: OAuthClient) -> None:
    """AUTH-11: RT1 -> RT2; replaying RT1 is invalid_grant and kills RT2."""
    rt1 = oauth.tokens()["refresh_token"]
    rotated = oauth.refresh(rt1)
    assert rotated.status_code == 200
    rt2 = rotated.json()["refresh_token"]
    assert rt2 != rt1
    replay = oauth.refresh(rt1)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert oauth.refresh(rt2).json()["error"] == "invalid_grant"
    assert not AccessToken.objects.exists()


def test_revoked_refresh_token_is_invalid_grant(oauth: OAuthClient) -> None:
    """A refresh token revoked via RFC 7009 no longer refreshes."""
    tokens = oauth.tokens()
    revoke = post_form(
        Client(),
        "/oauth/revoke/",
        {"token": tokens["refresh_token"], "client_id": oauth.app.application.client_id},
    )
    assert revoke.status_code == 200
    assert oauth.refresh(tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_no_raw_token_in_any_column(oauth: OAuthClient) -> None:
    """AUTH-13: neither the access nor the refresh token nor the code is stored."""
    code = oauth.code()
    tokens = oauth.redeem(code).json()
    secrets = [tokens["access_token"], tokens["refresh_token"], code]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema='public' AND data_type IN ('text','character varying','jsonb')"
        )
        columns = cursor.fetchall()
        for table, column in columns:
            for secret in secrets:
                cursor.execute(
                    f'SELECT count(*) FROM "{table}" WHERE "{column}"::text LIKE %s',  # noqa: S608
                    ["%" + secret + "%"],
                )
                assert cursor.fetchone()[0] == 0, (table, column)
    assert Grant.objects.get().code.startswith("redeemed:")
