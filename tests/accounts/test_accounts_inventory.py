"""Route inventory (OWASP API9): every dashboard and API route needs a login.

The URLconf is walked, so a new route that forgets authentication fails here
unless it is added to the public allowlist on purpose.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

# Routes anyone may open: the ways in, and the API description.
PUBLIC = {
    "accounts/login/",
    "accounts/signup/",
    "accounts/password/reset/",
    "accounts/password/reset/sent/",
    "accounts/password/reset/<uidb64>/<token>/",
    "accounts/password/reset/complete/",
    "accounts/invite/<str:token>/",
    "accounts/logout/",
    "api/schema/",
    "api/docs/",
    "api/redoc/",
    "i18n/setlang/",
    "healthz",
    "readyz",
    # The site icon: a redirect to a static file.
    "favicon.ico",
    # OAuth 2.0: clients authenticate in the request body or header (RFC
    # 6749/7009/7662), not with a session; each refuses what it must.
    ".well-known/oauth-authorization-server",
    "oauth/token/",
    "oauth/revoke/",
    "oauth/introspect/",
    # Key exchange: the code and PKCE verifier are the credential.
    "api/v1/auth/keys",
    # Prometheus scrapes with a bearer token or from an allow-listed address.
    "metrics",
}
SAMPLES = {
    "<uuid:public_id>": str(uuid.uuid4()),
    "<int:pk>": "1",
    "<str:token>": "t",
    "<uidb64>": "MQ",
    "<token>": "t",
}


def _walk(patterns: list[URLPattern | URLResolver], prefix: str = "") -> Iterator[str]:
    for entry in patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            if route.startswith("admin/"):
                continue  # Django's admin guards itself (staff only)
            yield from _walk(entry.url_patterns, route)
        else:
            yield route


ROUTES = sorted(set(_walk(get_resolver().url_patterns)))


def _sample(route: str) -> str:
    if route.startswith("^"):  # the API's catch-all
        return "/api/v1/anything"
    path = route
    for token, value in SAMPLES.items():
        path = path.replace(token, value)
    return "/" + path


def test_inventory_is_known() -> None:
    """The walk sees the dashboard, accounts and API routes."""
    assert {"", "keys/", "accounts/members/", "api/v1/keys", "api/v1/models"} <= set(ROUTES)


@pytest.mark.parametrize("route", [r for r in ROUTES if r not in PUBLIC])
def test_private_routes_refuse_anonymous_visitors(db: None, route: str) -> None:
    """Anonymous GET and POST get a login redirect, 401, 404 or 405, never content."""
    client = Client()
    for method in ("get", "post"):
        response = getattr(client, method)(_sample(route))
        if response.status_code == 302:
            assert response["Location"].startswith("/accounts/login/"), route
        else:
            assert response.status_code in (401, 404, 405), (route, method, response.status_code)
