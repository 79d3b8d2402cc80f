"""Revocation, introspection, metadata and token-endpoint hygiene (AUTH-14..18)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from accounts.oauth.services import oauth_resource_server_register
from tests.accounts.oauth.conftest import OAuthClient, post_form

pytestmark = pytest.mark.django_db


def _resource_server_token() -> str:
    rs = oauth_resource_server_register(name="RS")
    response = post_form(
        Client(),
        "/oauth/token/",
        {
            "grant_type": "client_credentials",
            "client_id": rs.application.client_id,
            "client_secret": rs.client_secret,
        },
    )
    assert response.status_code == 200, response.content
    assert response.json()["scope"] == "introspection"
    return response.json()["access_token"]


def test_metadata_exact() -> None:
    """AUTH-16/07: RFC 8414 metadata lists only what is enabled."""
    data = Client().get("/.well-known/oauth-authorization-server").json()
    base = "http://testserver"
    assert data["issuer"] == base
    assert data["authorization_endpoint"] == base + "/oauth/authorize/"
    assert data["token_endpoint"] == base + "/oauth/token/"
    assert data["revocation_endpoint"] == base + "/oauth/revoke/"
    assert data["introspection_endpoint"] == base + "/oauth/introspect/"
    assert data["code_challenge_methods_supported"] == ["S256"]
    assert data["response_types_supported"] == ["code"]
    assert data["grant_types_supported"] == [
        "authorization_code",
        "refresh_token",
        "client_credentials",
    ]
    assert "implicit" not in data["grant_types_supported"]
    assert "password" not in data["grant_types_supported"]
    assert data["scopes_supported"] == [
        "chat",
        "introspection",
        "keys:read",
        "keys:write",
        "usage:read",
    ]
    assert data["authorization_response_iss_parameter_supported"] is True


def test_token_response_no_store_and_form_only(oauth: OAuthClient) -> None:
    """AUTH-17: no-store on token responses; JSON bodies and query params refused."""
    code = oauth.code()
    as_json = Client().post(
        "/oauth/token/",
        {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": oauth.app.application.client_id,
        },
        content_type="application/json",
    )
    assert as_json.status_code == 400
    assert as_json.json()["error"] == "invalid_request"
    assert as_json["Cache-Control"] == "no-store"
    in_query = post_form(
        Client(), f"/oauth/token/?code={code}", {"grant_type": "authorization_code"}
    )
    assert in_query.status_code == 400
    ok = oauth.redeem(code)
    assert ok.status_code == 200
    assert ok["Cache-Control"] == "no-store"
    assert ok["Pragma"] == "no-cache"
    error = oauth.redeem(code)
    assert error["Cache-Control"] == "no-store"


def test_revocation_semantics(oauth: OAuthClient, other_app) -> None:
    """AUTH-14: unknown token 200; other client cannot revoke; RT revocation kills AT."""
    tokens = oauth.tokens()
    rs_token = _resource_server_token()
    unknown = post_form(
        Client(), "/oauth/revoke/", {"token": "nope", "client_id": oauth.app.application.client_id}
    )
    assert unknown.status_code == 200
    foreign = post_form(
        Client(),
        "/oauth/revoke/",
        {"token": tokens["access_token"], "client_id": other_app.application.client_id},
    )
    assert foreign.status_code == 200
    assert _introspect(rs_token, tokens["access_token"])["active"] is True
    as_json = Client().post(
        "/oauth/revoke/",
        {"token": tokens["refresh_token"], "client_id": oauth.app.application.client_id},
        content_type="application/json",
    )
    assert as_json.status_code == 400
    revoke = post_form(
        Client(),
        "/oauth/revoke/",
        {"token": tokens["refresh_token"], "client_id": oauth.app.application.client_id},
    )
    assert revoke.status_code == 200
    assert _introspect(rs_token, tokens["access_token"]) == {"active": False}


def _introspect(bearer: str, token: str) -> dict:
    response = post_form(
        Client(), "/oauth/introspect/", {"token": token}, HTTP_AUTHORIZATION=f"Bearer {bearer}"
    )
    assert response.status_code == 200, response.content
    return response.json()


def test_introspection_needs_auth_and_says_little(oauth: OAuthClient) -> None:
    """AUTH-15: anonymous 401; unknown/user tokens only {"active": false}."""
    tokens = oauth.tokens()
    assert (
        post_form(Client(), "/oauth/introspect/", {"token": tokens["access_token"]}).status_code
        == 401
    )
    # A user's token (no introspection scope) and client credentials are refused.
    user_bearer = post_form(
        Client(),
        "/oauth/introspect/",
        {"token": "x"},
        HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}",
    )
    assert user_bearer.status_code == 401
    creds = post_form(
        Client(), "/oauth/introspect/", {"token": "x", "client_id": oauth.app.application.client_id}
    )
    assert creds.status_code == 401
    rs = _resource_server_token()
    assert (
        Client()
        .get(
            "/oauth/introspect/",
            {"token": tokens["access_token"]},
            HTTP_AUTHORIZATION=f"Bearer {rs}",
        )
        .status_code
        == 405
    )
    active = _introspect(rs, tokens["access_token"])
    assert active["active"] is True
    assert active["scope"] == "chat"
    assert active["client_id"] == oauth.app.application.client_id
    assert _introspect(rs, "unknown-token") == {"active": False}


def test_deploy_check_passes_with_every_bcp_flag() -> None:
    """AUTH-18: check --deploy passes (no DEBUG, real SECRET_KEY), no OAuth warning."""
    from django.conf import settings as django_settings

    flags = {
        k: v
        for k, v in django_settings.OAUTH2_PROVIDER.items()
        if k.startswith("COMPLIANT_BCP_RFC9700_")
    }
    assert len(flags) == 10
    assert all(v is True for v in flags.values())
    root = Path(__file__).resolve().parents[3]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "xrouter_site.settings",
        "SECRET_KEY": "k3y-" + "Zq8!vR2#pL5@wN9$" * 4,
        "ALLOWED_HOSTS": "xrouter.example",
    }
    env.pop("DEBUG", None)
    # Set for Playwright by tests/browser/conftest.py when browser tests run in
    # the same session; a deployment never has it.
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "oauth2_provider" not in result.stdout + result.stderr
