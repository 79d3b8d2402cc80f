"""Single sign-on in headless Chromium against a real OpenID Connect provider.

The provider is django-oauth-toolkit with OIDC on, in a second process
(tests/sso_idp.py): its own users, login page, RS256 ID tokens, JWKS and
userinfo. XRouter is pytest-django's ``live_server`` configured as its
relying party through settings (mozilla-django-oidc, PKCE and nonce).

- anna (group ``xrouter-acme-admins``) signs in: her account is created
  just in time and she lands on the dashboard as an admin of the mapped
  team, without ever having had a password here.
- oleg (group ``marketing``, mapped to nothing) is refused: the login page
  says so, and no account is created.
- With ``XROUTER_PASSWORD_LOGIN=false`` the login page offers only SSO and
  a posted password is refused.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.test import override_settings

from accounts.models import Membership, Team, User

pytestmark = pytest.mark.slow

CLIENT_ID = "xrouter-dashboard"
CLIENT_SECRET = "idp-test-secret-0123456789"
TEAM_MAP = (
    '[{"claim": "groups", "value": "xrouter-acme-admins", "team": "acme", "role": "admin"},'
    ' {"claim": "groups", "value": "xrouter-users", "team": "acme", "role": "member"}]'
)


@pytest.fixture
def idp(live_server: Any) -> Iterator[str]:
    """Start the OIDC provider; yield its base URL."""
    script = Path(__file__).resolve().parents[1] / "sso_idp.py"
    process = subprocess.Popen(  # noqa: S603 (our own script, fixed arguments)
        [
            sys.executable,
            str(script),
            "--port",
            "0",
            "--redirect-uri",
            f"{live_server.url}/accounts/sso/callback/",
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            CLIENT_SECRET,
            "--user",
            "anna:anna@corp.example:anna-pw-1:xrouter-acme-admins,staff",
            "--user",
            "oleg:oleg@corp.example:oleg-pw-1:marketing",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("READY "), f"the provider did not start: {line!r}"
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def sso(idp: str, transactional_db: None) -> Iterator[str]:
    discovery = requests.get(f"{idp}/o/.well-known/openid-configuration", timeout=5).json()
    with override_settings(
        XROUTER_SSO_ENABLED=True,
        XROUTER_SSO_NAME="Corp ID",
        XROUTER_SSO_TEAM_MAP=TEAM_MAP,
        OIDC_OP_AUTHORIZATION_ENDPOINT=discovery["authorization_endpoint"],
        OIDC_OP_TOKEN_ENDPOINT=discovery["token_endpoint"],
        OIDC_OP_USER_ENDPOINT=discovery["userinfo_endpoint"],
        OIDC_OP_JWKS_ENDPOINT=discovery["jwks_uri"],
        OIDC_RP_CLIENT_ID=CLIENT_ID,
        OIDC_RP_CLIENT_SECRET=CLIENT_SECRET,
        AUTHENTICATION_BACKENDS=[
            "accounts.sso.TeamMappingOidcBackend",
            "django.contrib.auth.backends.ModelBackend",
        ],
    ):
        yield idp


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def _sign_in_at_provider(page: Any, site: str, idp: str, username: str, password: str) -> None:
    page.goto(f"{site}/accounts/login/")
    page.get_by_test_id("sso-login").click()
    page.wait_for_url(f"{idp}/login/**")
    page.locator("#idp-username").fill(username)
    page.locator("#idp-password").fill(password)
    page.locator("#idp-submit").click()


def test_mapped_user_signs_in_and_is_created_just_in_time(
    sso: str, live_server: Any, page: Any, screenshot_dir: Path
) -> None:
    site = live_server.url
    assert not User.objects.filter(email="anna@corp.example").exists()
    _sign_in_at_provider(page, site, sso, "anna", "anna-pw-1")
    page.wait_for_url(f"{site}/")
    page.screenshot(path=str(screenshot_dir / "sso-01-signed-in.png"), full_page=True)
    assert page.get_by_role("link", name="anna").is_visible()
    user = User.objects.get(email="anna@corp.example")
    assert user.username == "anna" and not user.has_usable_password()
    membership = Membership.objects.get(user=user)
    assert (membership.team.slug, membership.role) == ("acme", "admin")
    # The session works on the dashboard: the team's data-handling page.
    page.goto(f"{site}/accounts/data-handling/")
    assert page.get_by_role("heading", level=1).inner_text().endswith("acme")
    # A second login finds the same account.
    page.context.clear_cookies()
    _sign_in_at_provider(page, site, sso, "anna", "anna-pw-1")
    page.wait_for_url(f"{site}/")
    assert User.objects.filter(email="anna@corp.example").count() == 1


def test_unmapped_user_is_refused_and_not_created(
    sso: str, live_server: Any, page: Any, screenshot_dir: Path
) -> None:
    site = live_server.url
    _sign_in_at_provider(page, site, sso, "oleg", "oleg-pw-1")
    page.wait_for_url(f"{site}/accounts/login/?sso=refused")
    page.screenshot(path=str(screenshot_dir / "sso-02-refused.png"), full_page=True)
    assert "not mapped to any team" in page.get_by_test_id("sso-refused").inner_text()
    assert not User.objects.filter(email="oleg@corp.example").exists()
    assert not Team.objects.exists()
    # Not logged in: the dashboard sends the browser back to the login page.
    page.goto(f"{site}/")
    assert "/accounts/login/" in page.url


def test_password_login_can_be_turned_off(
    sso: str, live_server: Any, page: Any, django_user_model: Any
) -> None:
    site = live_server.url
    django_user_model.objects.create_user("local", password="local-pw-12345")
    with override_settings(
        XROUTER_PASSWORD_LOGIN=False,
        AUTHENTICATION_BACKENDS=["accounts.sso.TeamMappingOidcBackend"],
    ):
        page.goto(f"{site}/accounts/login/")
        assert page.get_by_test_id("password-login-off").is_visible()
        assert page.locator("input[type=password]").count() == 0
        session = requests.Session()
        form = session.get(f"{site}/accounts/login/", timeout=5)
        token = session.cookies["csrftoken"]
        refused = session.post(
            f"{site}/accounts/login/",
            data={"username": "local", "password": "local-pw-12345", "csrfmiddlewaretoken": token},
            headers={"Referer": f"{site}/accounts/login/"},
            timeout=5,
        )
        assert form.status_code == 200 and refused.status_code == 403
        assert "sessionid" not in session.cookies
        assert requests.get(f"{site}/accounts/signup/", timeout=5).status_code == 404
        # SSO still works.
        _sign_in_at_provider(page, site, sso, "anna", "anna-pw-1")
        page.wait_for_url(f"{site}/")
