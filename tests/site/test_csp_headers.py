"""CSP with frame-ancestors on every response (issue 15, Low; API8)."""

from __future__ import annotations

import pytest
from django.test import Client

from keys.services import CreatedKey
from tests.accounts.cast import Cast, build_cast

pytestmark = pytest.mark.django_db


@pytest.fixture
def cast(team: object, other_team: object) -> Cast:
    return build_cast(team=team, other_team=other_team)  # type: ignore[arg-type]


def directives(header: str) -> dict[str, str]:
    parts = (part.strip().split(" ", 1) for part in header.split(";") if part.strip())
    return {name: value for name, value in ((p[0], p[1] if len(p) > 1 else "") for p in parts)}


@pytest.mark.parametrize(
    "path",
    [
        "/accounts/login/",
        "/accounts/signup/",
        "/admin/login/",
        "/api/schema/",
        "/healthz",
        "/no-such-page/",
    ],
)
def test_anonymous_pages_carry_the_policy(path: str) -> None:
    response = Client().get(path)
    policy = directives(response["Content-Security-Policy"])
    assert policy["frame-ancestors"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["default-src"] == "'self'"
    assert "'unsafe-inline'" not in policy["script-src"]


def test_dashboard_api_and_oauth_pages_carry_the_policy(cast: Cast) -> None:
    client = cast.client_for(cast.alice, cast.team)
    for path in ("/", "/keys/", "/usage/", "/oauth/apps/", "/api/v1/keys", "/auth"):
        response = client.get(path)
        assert "frame-ancestors 'none'" in response["Content-Security-Policy"], path


def test_gateway_answers_carry_a_locked_down_policy(api_key: CreatedKey) -> None:
    ok = Client().get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {api_key.plaintext}")
    refused = Client().get("/v1/models")
    for response in (ok, refused):
        assert response["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert (ok.status_code, refused.status_code) == (200, 401)


def test_only_the_api_docs_may_use_inline_styles() -> None:
    for path in ("/api/redoc/", "/api/docs/"):
        docs = directives(Client().get(path)["Content-Security-Policy"])
        assert "'unsafe-inline'" in docs["style-src"]
        assert "'unsafe-inline'" not in docs["script-src"]
    login = directives(Client().get("/accounts/login/")["Content-Security-Policy"])
    assert "'unsafe-inline'" not in login["style-src"]
