"""Fixtures for the OAuth server tests: the cast, registered apps, a client.

:class:`OAuthClient` drives the authorization-code flow through Django's
test client the way a browser and an app would: the user's browser GETs
the consent page and POSTs approval; the app POSTs to the token endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.test import Client

from accounts.models import Team
from accounts.oauth import tokens as oauth_tokens
from accounts.oauth.services import RegisteredApp, oauth_application_register
from tests.accounts.cast import Cast, build_cast

# RFC 7636 Appendix B.
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
REDIRECT = "https://app.example/cb"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(autouse=True)
def _fresh_token_cache() -> Any:
    oauth_tokens.clear_local_cache()
    yield
    oauth_tokens.clear_local_cache()


@pytest.fixture
def cast(team: Team, other_team: Team) -> Cast:
    return build_cast(team=team, other_team=other_team)


@pytest.fixture
def public_app(cast: Cast) -> RegisteredApp:
    return oauth_application_register(
        name="Notes App", redirect_uris=[REDIRECT], client_type="public", owner=cast.alice
    )


@pytest.fixture
def other_app(cast: Cast) -> RegisteredApp:
    return oauth_application_register(
        name="Other App", redirect_uris=[REDIRECT], client_type="public", owner=cast.alice
    )


@pytest.fixture
def confidential_app(cast: Cast) -> RegisteredApp:
    return oauth_application_register(
        name="Server App", redirect_uris=[REDIRECT], client_type="confidential", owner=cast.alice
    )


@dataclass
class OAuthClient:
    """Drive the flow for one user (``browser``) and one app (``app``)."""

    browser: Client
    app: RegisteredApp
    redirect_uri: str = REDIRECT

    def authorize_params(self, **overrides: Any) -> dict[str, str]:
        params = {
            "response_type": "code",
            "client_id": self.app.application.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": "chat",
            "state": "st-123",
            "code_challenge": CHALLENGE,
            "code_challenge_method": "S256",
        }
        params.update(overrides)
        return {k: v for k, v in params.items() if v is not None}

    def consent_page(self, **overrides: Any) -> Any:
        return self.browser.get("/oauth/authorize/", self.authorize_params(**overrides))

    def approve(self, **overrides: Any) -> Any:
        """Approve on the consent page; return the redirect response."""
        page = self.consent_page(**overrides)
        assert page.status_code == 200, page.content
        form = {k: v for k, v in page.context["form"].initial.items() if v is not None}
        form["allow"] = "Authorize"
        return self.browser.post("/oauth/authorize/", form)

    def code(self, **overrides: Any) -> str:
        response = self.approve(**overrides)
        assert response.status_code == 302, response.content
        query = parse_qs(urlsplit(response["Location"]).query)
        assert query["state"] == [overrides.get("state", "st-123")]
        return query["code"][0]

    def token(
        self, data: dict[str, str], *, client: Client | None = None, secret: str | None = None
    ) -> Any:
        body = {"client_id": self.app.application.client_id, **data}
        if secret:
            body["client_secret"] = secret
        return post_form(client or Client(), "/oauth/token/", body)

    def redeem(self, code: str, verifier: str | None = VERIFIER, **extra: str) -> Any:
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri}
        if verifier is not None:
            data["code_verifier"] = verifier
        data.update(extra)
        return self.token(data)

    def tokens(self, **overrides: Any) -> dict[str, Any]:
        response = self.redeem(self.code(**overrides))
        assert response.status_code == 200, response.content
        return response.json()

    def refresh(self, refresh_token: str) -> Any:
        return self.token({"grant_type": "refresh_token", "refresh_token": refresh_token})


@pytest.fixture
def oauth(cast: Cast, public_app: RegisteredApp) -> OAuthClient:
    return OAuthClient(browser=cast.client_for(cast.alice, cast.team), app=public_app)


def post_form(client: Client, path: str, data: dict[str, str], **extra: Any) -> Any:
    """POST ``data`` form-encoded (the test client would send multipart)."""
    return client.post(path, urlencode(data), content_type=FORM, **extra)
