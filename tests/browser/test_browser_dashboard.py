"""The dashboard in a real browser, end to end against a live gateway.

One journey: sign up, create a team, create a key and read it once, call
``/v1/chat/completions`` with it through the same server, see it masked,
revoke it and watch the gateway refuse it within a second; then switch the
UI to Russian. The server is pytest-django's ``live_server`` (dashboard and
``/v1/`` in one process, real PostgreSQL and Redis) with the OpenAI
emulator as the upstream.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import expect

from providers.emulators.testing import RunningEmulator, start_emulator
from tests.conftest import openai_catalog
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery staple 42"


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
    return str(live_server.url)


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def chat(site: str, key: str) -> int:
    response = requests.post(
        f"{site}/v1/chat/completions",
        json={"model": "local/mock", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    return response.status_code


def test_key_lifecycle_in_browser(site: str, page: Any, screenshot_dir: Path) -> None:
    """Sign up → team → key shown once → masked → revoked → 401 within 1 s → Russian."""
    shot = lambda name: page.screenshot(path=str(screenshot_dir / f"{name}.png"), full_page=True)  # noqa: E731

    page.goto(f"{site}/accounts/signup/")
    page.get_by_label("Username").fill("dana")
    page.get_by_label("E-mail").fill("dana@example.com")
    page.locator("#id_password1").fill(PASSWORD)
    page.get_by_label("Password confirmation").fill(PASSWORD)
    shot("01-signup")
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url(f"{site}/accounts/teams/")

    page.get_by_label("Team name").fill("Rocket Lab")
    shot("02-teams")
    page.get_by_role("button", name="Create team").click()
    page.wait_for_url(f"{site}/")
    expect(page.get_by_role("heading", name="Rocket Lab")).to_be_visible()
    expect(page.get_by_text("local/mock").first).to_be_visible()
    shot("03-home")

    page.get_by_role("link", name="API keys").click()
    page.get_by_role("link", name="Create a key").click()
    page.get_by_label("Name").fill("browser key")
    page.get_by_label("local/mock").check()
    page.get_by_label("Requests per minute").fill("100")
    shot("04-key-form")
    page.get_by_role("button", name="Create key").click()

    secret_field = page.get_by_test_id("plaintext-key")
    expect(secret_field).to_have_value(re.compile(r"^xr_live_"))
    plaintext = secret_field.input_value()
    assert plaintext.startswith("xr_live_") and len(plaintext) == 57
    expect(page.get_by_role("alert").filter(has_text="shown only once")).to_be_visible()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="Copy", exact=True).click()
    page.get_by_role("status").filter(has_text="Copied").wait_for()
    shot("05-key-created")

    assert chat(site, plaintext) == 200

    page.get_by_role("link", name="I have copied it").click()
    page.wait_for_url(f"{site}/keys/")
    html = page.content()
    assert plaintext not in html
    masked = f"{plaintext[:12]}…{plaintext[-4:]}"
    row = page.get_by_role("row").filter(has_text="browser key")
    expect(row.get_by_text(masked)).to_be_visible()
    expect(row.get_by_text("Active")).to_be_visible()
    shot("06-keys")

    row.get_by_role("link", name="Revoke").click()
    expect(page.get_by_text("cannot be undone")).to_be_visible()
    shot("07-revoke-confirm")
    page.get_by_role("button", name="Yes, revoke").click()
    page.wait_for_url(f"{site}/keys/")
    wait_until(
        lambda: chat(site, plaintext) == 401,
        timeout=1.0,
        what="the revoked key to get 401 (the 1 s revocation bound)",
    )
    row = page.get_by_role("row").filter(has_text="browser key")
    expect(row.get_by_text("Revoked")).to_be_visible()
    shot("08-keys-revoked")

    page.get_by_role("link", name="Members").click()
    expect(page.get_by_role("heading", name="Members of Rocket Lab")).to_be_visible()
    shot("09-members")

    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Language").select_option("ru")
    page.wait_for_load_state()
    page.get_by_role("heading", name="API-ключи").wait_for()
    expect(page.locator("html")).to_have_attribute("lang", "ru")
    expect(page.get_by_role("link", name="Главная")).to_be_visible()
    expect(page.get_by_role("link", name="Создать ключ")).to_be_visible()
    expect(
        page.get_by_role("row").filter(has_text="browser key").get_by_text("Отозван")
    ).to_be_visible()
    shot("10-keys-ru")

    page.goto(f"{site}/api/docs/")
    page.locator(".swagger-ui .info").wait_for()
    shot("11-api-docs")


def test_dashboard_works_without_javascript(site: str, chromium: Any) -> None:
    """Logging in, switching language and creating a key need no JavaScript."""
    from accounts.services import user_signup

    user_signup(username="erin", email="erin@example.com", password=PASSWORD)
    context = chromium.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{site}/accounts/login/")
        page.get_by_label("Username").fill("erin")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{site}/accounts/teams/")
        page.get_by_label("Team name").fill("No JS")
        page.get_by_role("button", name="Create team").click()
        page.goto(f"{site}/keys/new/")
        page.get_by_label("Name").fill("plain html")
        page.get_by_role("button", name="Create key").click()
        expect(page.get_by_test_id("plaintext-key")).to_have_value(re.compile(r"^xr_live_"))
        page.get_by_label("Language").select_option("ru")
        page.get_by_role("button", name="Change language").click()
        page.get_by_role("link", name="Главная").wait_for()
    finally:
        context.close()
