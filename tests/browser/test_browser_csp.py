"""The site's Content-Security-Policy breaks nothing a browser shows (issue 15, Low).

Chromium records every CSP violation through ``securitypolicyviolation``
events; each page of the dashboard, the usage charts, Swagger UI, Redoc
and the admin must load with none, and still render.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from accounts.models import User
from accounts.services import team_create
from keys.services import api_key_create
from providers.emulators.testing import RunningEmulator, start_emulator
from tests.conftest import openai_catalog

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery staple 42"
REDOC_CDN_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', e => {
  window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline'));
});
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[RunningEmulator]:
    emulator = start_emulator("openai")
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def site(
    transactional_db: None,
    live_server: Any,
    upstream: RunningEmulator,
    load_catalog: Callable[[str], None],
) -> str:
    load_catalog(openai_catalog(upstream.base_url))
    user = User.objects.create_superuser("dana", "dana@example.com", PASSWORD)
    team = team_create(name="Rocket Lab", owner=user)
    api_key_create(team=team, name="charted", created_by=user)
    return str(live_server.url)


def test_every_page_loads_without_a_csp_violation(site: str, chromium: Any) -> None:
    context = chromium.new_context(locale="en-US")
    context.set_default_timeout(15_000)
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    try:
        page.goto(f"{site}/accounts/login/")
        page.get_by_label("Username").fill("dana")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{site}/")
        visited: dict[str, list[str]] = {}
        pages = {
            "/": "h1",
            "/keys/": "h1",
            "/keys/new/": "form",
            "/usage/": "h1",
            "/playground/": "#playground",
            "/limits/": "h1",
            "/accounts/audit/": "h1",
            "/accounts/members/": "h1",
            "/oauth/apps/": "h1",
            "/admin/": "#content",
            "/api/docs/": ".swagger-ui .info",
            "/api/redoc/": "redoc, #redoc-container, .redoc-wrap, h1",
        }
        for path, ready in pages.items():
            response = page.goto(site + path)
            assert response is not None and response.status == 200, path
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
            page.locator(ready).first.wait_for()
            page.wait_for_load_state("networkidle")
            visited[path] = page.evaluate("window.__csp")
        # The Redoc bundle links its footer logo on Redocly's CDN; the site
        # loads nothing from third parties, so that image is blocked on purpose.
        visited["/api/redoc/"] = [
            v for v in visited["/api/redoc/"] if v != f"img-src {REDOC_CDN_LOGO}"
        ]
        assert visited == {path: [] for path in pages}
        # The playground's fetch calls (key, stream, generation) are same-origin.
        page.goto(site + "/playground/")
        page.get_by_label("Message").fill("Hello")
        page.get_by_role("button", name="Send").click()
        page.locator('.pg-assistant[data-state="done"]').wait_for()
        assert page.evaluate("window.__csp") == []
    finally:
        context.close()
