"""Both OAuth flows in real headless Chromium, against a tiny local client app.

The third-party app is a few lines of ``http.server`` on a loopback port
(RFC 8252 7.3 lets native apps redirect to plain http there): it serves a
page with "sign in" links and records what arrives at ``/callback``. The
XRouter side is pytest-django's ``live_server`` (dashboard, OAuth endpoints
and ``/v1/`` in one process, real PostgreSQL and Redis) with the OpenAI
emulator upstream, as in the ``gateway`` fixture.

1. Authorization code + PKCE: the user logs in and registers the app in
   the dashboard, the app sends them to ``/oauth/authorize/`` with an S256
   challenge and a ``state``, they approve on the consent page, the code
   and ``state`` come back to the loopback callback, the app redeems the
   code with its verifier and calls ``/v1/chat/completions``; the user then
   revokes the app in the dashboard and the token fails within a second.
2. OpenRouter's key exchange: ``/auth`` sends the logged-out user through
   the login page to the consent page, the code comes back to the callback
   and ``POST /api/v1/auth/keys`` trades it for a key that calls ``/v1/``.
"""

from __future__ import annotations

import html
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from playwright.sync_api import expect

from accounts.models import Team
from accounts.oauth.pkce import s256_challenge
from tests.accounts.cast import PASSWORD, Cast, build_cast
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

APP_NAME = "Notes Desktop"


class ClientApp:
    """A loopback third-party app: a page with links and a recording callback."""

    def __init__(self) -> None:
        self.links: dict[str, str] = {}
        self.callbacks: list[dict[str, str]] = []
        app = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802  (http.server's naming)
                parts = urlsplit(self.path)
                if parts.path == "/callback":
                    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                    app.callbacks.append(query)
                    body = "<h1>Signed in</h1><p>You can close this window.</p>"
                else:
                    body = "<h1>Notes Desktop</h1>" + "".join(
                        f'<p><a href="{html.escape(url)}">{html.escape(label)}</a></p>'
                        for label, url in app.links.items()
                    )
                payload = f"<!doctype html><html><body>{body}</body></html>".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                """Keep the test output quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.callback_url = f"{self.url}/callback"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def client_app() -> Iterator[ClientApp]:
    app = ClientApp()
    try:
        yield app
    finally:
        app.stop()


@pytest.fixture
def cast(gateway: Any, team: Team, other_team: Team) -> Cast:
    return build_cast(team=team, other_team=other_team)


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def pkce_pair() -> tuple[str, str]:
    """Return a fresh (verifier, S256 challenge), as a real client makes them."""
    verifier = secrets.token_urlsafe(48)
    return verifier, s256_challenge(verifier)


def http(method: str, url: str, **kwargs: Any) -> requests.Response:
    """Send one request as the app's back end would, on a fresh connection.

    ``Connection: close`` ends live_server's thread for it at once: a
    keep-alive thread would hold its persistent database connection past
    the session and block dropping the test database.
    """
    headers = {"Connection": "close", **kwargs.pop("headers", {})}
    return requests.request(method, url, headers=headers, timeout=10, **kwargs)


def chat(site: str, token: str) -> int:
    response = http(
        "POST",
        f"{site}/v1/chat/completions",
        json={"model": "local/mock", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {token}"},
    )
    return response.status_code


def log_in(page: Any, username: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def screenshot(page: Any, folder: Path) -> Callable[[str], None]:
    return lambda name: page.screenshot(path=str(folder / f"oauth-{name}.png"), full_page=True)


def test_authorization_code_flow_in_browser(
    gateway: Any, cast: Cast, client_app: ClientApp, page: Any, screenshot_dir: Path
) -> None:
    """Register → authorize (PKCE, state) → consent → loopback code → token → /v1/ → revoke."""
    site = gateway.url
    shot = screenshot(page, screenshot_dir)

    page.goto(f"{site}/accounts/login/")
    log_in(page, "alice")
    page.wait_for_url(f"{site}/")
    page.goto(f"{site}/oauth/apps/")
    page.get_by_label("Name").fill(APP_NAME)
    page.get_by_label("Redirect URIs").fill(client_app.callback_url)
    page.get_by_label("Client type").select_option("public")
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_test_id("client-id")).to_have_text(re.compile(r"\S"))
    client_id = page.get_by_test_id("client-id").inner_text().strip()
    shot("01-app-registered")

    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(16)
    authorize = f"{site}/oauth/authorize/?" + urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": client_app.callback_url,
            "scope": "chat keys:read",
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    client_app.links["Sign in with XRouter"] = authorize
    page.goto(client_app.url)
    page.get_by_role("link", name="Sign in with XRouter").click()
    page.wait_for_url(f"{site}/oauth/authorize/**")
    expect(page.get_by_role("heading", level=1)).to_contain_text(APP_NAME)
    scopes = page.get_by_test_id("scopes")
    expect(scopes).to_contain_text("chat")
    expect(scopes).to_contain_text("keys:read")
    expect(page.get_by_text("on behalf of the team “Acme”")).to_be_visible()
    shot("02-consent")
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(f"{client_app.callback_url}?**")
    expect(page.get_by_role("heading", name="Signed in")).to_be_visible()

    assert len(client_app.callbacks) == 1
    callback = client_app.callbacks[0]
    assert callback["state"] == state
    token_response = http(
        "POST",
        f"{site}/oauth/token/",
        data={
            "grant_type": "authorization_code",
            "code": callback["code"],
            "redirect_uri": client_app.callback_url,
            "client_id": client_id,
            "code_verifier": verifier,
        },
    )
    assert token_response.status_code == 200, token_response.text
    tokens = token_response.json()
    assert tokens["token_type"] == "Bearer"
    assert set(tokens["scope"].split()) == {"chat", "keys:read"}
    access = tokens["access_token"]
    assert chat(site, access) == 200
    keys = http("GET", f"{site}/api/v1/keys", headers={"Authorization": f"Bearer {access}"})
    assert keys.status_code == 200, keys.text

    page.goto(f"{site}/oauth/authorized/")
    row = page.locator(f'li[data-app="{client_id}"]')
    expect(row).to_contain_text(APP_NAME)
    shot("03-authorized-apps")
    row.get_by_role("button", name="Revoke access").click()
    page.wait_for_url(f"{site}/oauth/authorized/")
    wait_until(
        lambda: chat(site, access) == 401,
        timeout=1.0,
        what="the revoked token to get 401 (the 1 s revocation bound)",
    )
    expect(page.locator(f'li[data-app="{client_id}"]')).to_have_count(0)
    shot("04-access-revoked")


def test_openrouter_key_exchange_in_browser(
    gateway: Any, cast: Cast, client_app: ClientApp, page: Any, screenshot_dir: Path
) -> None:
    """/auth → login → consent → loopback code → POST /api/v1/auth/keys → key calls /v1/."""
    site = gateway.url
    shot = screenshot(page, screenshot_dir)
    verifier, challenge = pkce_pair()
    client_app.links["Get an XRouter key"] = f"{site}/auth?" + urlencode(
        {
            "callback_url": client_app.callback_url,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )

    page.goto(client_app.url)
    page.get_by_role("link", name="Get an XRouter key").click()
    page.wait_for_url(f"{site}/accounts/login/**")
    log_in(page, "alice")
    page.wait_for_url(f"{site}/auth?**")
    expect(page.get_by_role("heading", level=1)).to_contain_text(client_app.url)
    expect(page.get_by_text("A new API key of the team “Acme”")).to_be_visible()
    shot("05-exchange-consent")
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(f"{client_app.callback_url}?**")

    assert len(client_app.callbacks) == 1
    code = client_app.callbacks[0]["code"]
    exchange = http(
        "POST",
        f"{site}/api/v1/auth/keys",
        json={"code": code, "code_verifier": verifier, "code_challenge_method": "S256"},
    )
    assert exchange.status_code == 200, exchange.text
    body = exchange.json()
    assert body["user_id"] == str(cast.alice.pk)
    assert chat(site, body["key"]) == 200

    page.goto(f"{site}/keys/")
    expect(page.get_by_role("row").filter(has_text=f"App: {client_app.url}")).to_be_visible()
    shot("06-exchange-key-listed")
