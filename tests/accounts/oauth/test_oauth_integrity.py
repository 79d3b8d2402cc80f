"""OAuth holes from issue 15 (Low): approval_prompt=auto, /auth callbacks, secret page."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import override_settings

from accounts.oauth.services import RegisteredApp
from accounts.services import team_add_member
from keys.models import ApiKey
from tests.accounts.cast import Cast
from tests.accounts.oauth.conftest import CHALLENGE, OAuthClient

pytestmark = pytest.mark.django_db


def test_auto_prompt_with_no_prior_consent_shows_the_consent_page(oauth: OAuthClient) -> None:
    response = oauth.consent_page(approval_prompt="auto")
    assert response.status_code == 200
    assert "code" not in response.get("Location", "")
    assert b"Authorize" in response.content


def test_auto_prompt_after_dashboard_revocation_asks_again(oauth: OAuthClient, cast: Cast) -> None:
    """A token still unexpired does not count once the consent was revoked."""
    oauth.tokens()
    hidden = ApiKey.objects.get(kind=ApiKey.Kind.OAUTH, created_by=cast.alice)
    revoke = oauth.browser.post(f"/keys/{hidden.public_id}/revoke/")
    assert revoke.status_code == 302
    response = oauth.consent_page(approval_prompt="auto")
    assert response.status_code == 200
    assert b"Authorize" in response.content


def test_auto_prompt_for_another_team_asks_again(oauth: OAuthClient, cast: Cast) -> None:
    """A consent given for acme is not a consent for globex."""
    oauth.tokens()
    team_add_member(team=cast.other_team, user=cast.alice, role="owner")
    globex = OAuthClient(browser=cast.client_for(cast.alice, cast.other_team), app=oauth.app)
    response = globex.consent_page(approval_prompt="auto")
    assert response.status_code == 200
    assert b"Authorize" in response.content


def test_auto_prompt_with_a_live_consent_skips_the_page(oauth: OAuthClient) -> None:
    oauth.tokens()
    response = oauth.consent_page(approval_prompt="auto")
    assert response.status_code == 302
    assert parse_qs(urlsplit(response["Location"]).query)["code"]


@pytest.mark.parametrize("debug", [False, True])
def test_auth_refuses_plain_http_callbacks_off_loopback(cast: Cast, debug: bool) -> None:
    """https or loopback http only, DEBUG or not (OpenRouter's rule)."""
    browser = cast.client_for(cast.alice, cast.team)
    params = {"code_challenge": CHALLENGE, "code_challenge_method": "S256"}
    with override_settings(DEBUG=debug):
        refused = browser.get("/auth", {**params, "callback_url": "http://app.example/cb"})
        assert refused.status_code == 400
        assert b"Use https, or http on 127.0.0.1 or [::1]" in refused.content
        for ok in ("https://app.example/cb", "http://127.0.0.1:3000/cb", "http://[::1]:9/cb"):
            assert browser.get("/auth", {**params, "callback_url": ok}).status_code == 200


def test_new_client_secret_page_is_no_store(cast: Cast) -> None:
    page = cast.client_for(cast.alice, cast.team).post(
        "/oauth/apps/",
        {
            "name": "Server",
            "redirect_uris": "https://app.example/cb",
            "client_type": "confidential",
        },
    )
    assert page.status_code == 200
    assert page.context["created"].client_secret
    assert page.context["created"].client_secret.encode() in page.content
    assert page["Cache-Control"] == "no-store"


def test_public_app_listing_stays_cacheable_by_the_browser(
    cast: Cast, public_app: RegisteredApp
) -> None:
    """Only the response that carries a secret is marked."""
    page = cast.client_for(cast.alice, cast.team).get("/oauth/apps/")
    assert page.status_code == 200
    assert "no-store" not in page.get("Cache-Control", "")
