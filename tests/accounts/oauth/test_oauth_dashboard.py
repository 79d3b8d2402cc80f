"""Dashboard: app registration by owners/admins, authorized apps and revocation."""

from __future__ import annotations

import pytest
from oauth2_provider.models import AccessToken, Application

from tests.accounts.cast import Cast
from tests.accounts.oauth.conftest import OAuthClient

pytestmark = pytest.mark.django_db


def test_owner_registers_app_members_cannot(cast: Cast) -> None:
    """Owners/admins register apps (secret shown once, stored hashed); members get 403."""
    data = {
        "name": "Srv",
        "redirect_uris": "https://srv.example/cb\nhttp://127.0.0.1/cb",
        "client_type": "confidential",
    }
    page = cast.client_for(cast.alice, cast.team).post("/oauth/apps/", data)
    assert page.status_code == 200
    app = Application.objects.get(name="Srv")
    secret = page.context["created"].client_secret
    assert secret and app.client_secret != secret
    assert app.redirect_uris == "https://srv.example/cb http://127.0.0.1/cb"
    assert cast.client_for(cast.bob, cast.team).post("/oauth/apps/", data).status_code == 403
    bad = cast.client_for(cast.alice, cast.team).post(
        "/oauth/apps/", {**data, "redirect_uris": "http://srv.example/cb"}
    )
    assert bad.context["form"].errors["redirect_uris"]


def test_user_sees_and_revokes_authorized_app(oauth: OAuthClient) -> None:
    """The authorized-apps page lists the app; revoking deletes its tokens."""
    oauth.tokens()
    page = oauth.browser.get("/oauth/authorized/")
    assert b"Notes App" in page.content
    response = oauth.browser.post(f"/oauth/authorized/{oauth.app.application.pk}/revoke/")
    assert response.status_code == 302
    assert not AccessToken.objects.exists()
    marker = f'data-app="{oauth.app.application.client_id}"'.encode()
    assert marker not in oauth.browser.get("/oauth/authorized/").content


def test_consent_page_names_app_team_and_scopes(oauth: OAuthClient) -> None:
    page = oauth.consent_page(scope="chat usage:read")
    assert b"Notes App" in page.content
    assert b"Acme" in page.content
    assert b"usage:read" in page.content
    assert b"csrfmiddlewaretoken" in page.content
