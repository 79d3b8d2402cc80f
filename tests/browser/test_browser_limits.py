"""Limits, budgets, the audit log and a key's usage in a real browser.

An owner sets the team budget to 0 on the Limits page and the real
``/v1/chat/completions`` of the same server answers 402; lifts it and the
next request is served; sets the key's requests per minute to 1 on the key's
page and the second request is a 429, with the page showing what the limiter
counted. The audit log lists those changes and filters them, and the key's
page lists its requests, linking to each one's detail page. The server is
pytest-django's ``live_server`` (real PostgreSQL and Redis) with the OpenAI
emulator upstream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.test import Client
from playwright.sync_api import expect

from accounts.services import team_create, user_signup
from keys.services import CreatedKey, api_key_create
from providers.emulators.testing import RunningEmulator, start_emulator
from routing.models import UsageRecord
from routing.usage import records as usage
from tests.conftest import openai_catalog
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def upstream() -> Iterator[RunningEmulator]:
    emulator = start_emulator("openai")
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def setup(
    transactional_db: None,
    live_server: Any,
    upstream: RunningEmulator,
    load_catalog: Callable[[str], None],
) -> dict[str, Any]:
    load_catalog(openai_catalog(upstream.base_url))
    user = user_signup(username="olga", email="olga@example.com", password="x" * 20)
    team = team_create(name="Rocket Lab", owner=user)
    key = api_key_create(team=team, name="backend", created_by=user)
    client = Client()
    client.force_login(user)
    return {"site": str(live_server.url), "session": client.cookies["sessionid"].value, "key": key}


@pytest.fixture
def page(chromium: Any, setup: dict[str, Any]) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1366, "height": 900}, locale="en-US")
    context.set_default_timeout(10_000)
    context.add_cookies([{"name": "sessionid", "value": setup["session"], "url": setup["site"]}])
    try:
        yield context.new_page()
    finally:
        context.close()


def chat(site: str, key: CreatedKey) -> requests.Response:
    return requests.post(
        f"{site}/v1/chat/completions",
        json={"model": "local/mock", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {key.plaintext}"},
        timeout=10,
    )


def _records_written() -> int:
    sink = usage.stream_sink()
    if sink is not None:
        while sink.consume_once(block_ms=10):
            pass
    usage.flush_all()
    return UsageRecord.objects.count()


def test_budget_and_key_limit_refuse_requests_and_are_audited(
    setup: dict[str, Any], page: Any, screenshot_dir: Path
) -> None:
    site, key = setup["site"], setup["key"]
    out = screenshot_dir / "limits"
    out.mkdir(exist_ok=True)
    assert chat(site, key).status_code == 200

    # The team budget: 0 RUB refuses the next request with 402.
    page.goto(f"{site}/keys/")
    page.get_by_role("link", name="Members").click()
    page.get_by_role("link", name="Limits").click()
    expect(page.get_by_role("heading", name="Limits and budget for Rocket Lab")).to_be_visible()
    page.get_by_label("Team budget, RUB").fill("0")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Limits and budget saved.")).to_be_visible()
    expect(page.locator('.limit-state[data-kind="b"]')).to_contain_text(
        "Used 0.00 of 0.00 RUB · 0.00 RUB left"
    )
    page.screenshot(path=str(out / "team-budget.png"), full_page=True)
    refused = chat(site, key)
    assert refused.status_code == 402
    assert refused.json()["error"]["code"] == "insufficient_budget"

    # A bad value stays in the form with its error; nothing changes.
    page.get_by_label("Team budget, RUB").fill("10.005")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Ensure that there are no more than 2 decimal places.")).to_be_visible()
    assert chat(site, key).status_code == 402

    page.get_by_label("Team budget, RUB").fill("")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Limits and budget saved.")).to_be_visible()
    assert chat(site, key).status_code == 200

    # The key's own limit: 1 request a minute, so the next two get 200 then 429.
    page.get_by_role("link", name="API keys").click()
    page.get_by_role("link", name="backend").click()
    page.locator("#id_rpm_limit").fill("1")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Key “backend” saved.")).to_be_visible()
    assert [chat(site, key).status_code for _ in range(2)] == [200, 429]
    page.reload()
    expect(page.locator('.limit-state[data-kind="r"]')).to_contain_text("Used 1 of 1 · 0 left")
    page.screenshot(path=str(out / "key-limit.png"), full_page=True)

    # The audit log lists the changes, newest first, and filters by action.
    page.get_by_role("link", name="Members").click()
    page.get_by_role("link", name="Audit log").click()
    rows = page.locator("table.audit tbody tr")
    expect(rows.first).to_contain_text("Key limits changed")
    expect(rows.first).to_contain_text("rpm_limit: — → 1")
    expect(rows.first).to_contain_text("olga")
    expect(page.locator('tr[data-action="team.budget_changed"]')).to_have_count(2)
    expect(page.locator('tr[data-action="team.budget_changed"]').first).to_contain_text(
        "budget_rub: 0.00 → —"
    )
    expect(page.locator('tr[data-action="key.created"]')).to_have_count(1)
    page.get_by_label("Action").select_option("team.budget_changed")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(2)
    page.screenshot(path=str(out / "audit-log.png"), full_page=True)


def test_key_page_shows_usage_and_links_requests(
    setup: dict[str, Any], page: Any, screenshot_dir: Path
) -> None:
    site, key = setup["site"], setup["key"]
    for _ in range(3):
        assert chat(site, key).status_code == 200
    wait_until(lambda: _records_written() == 3, timeout=10, what="three usage records")
    page.goto(f"{site}/keys/{key.api_key.public_id}/")
    usage_section = page.locator("section.key-usage")
    expect(usage_section.get_by_role("heading", name="Usage in the last 14 days")).to_be_visible()
    expect(usage_section.locator(".stats")).to_contain_text("3")
    expect(usage_section.locator(".chart-box")).to_have_count(5)
    links = usage_section.locator("table.key-requests tbody tr a")
    expect(links).to_have_count(3)
    page.screenshot(path=str(screenshot_dir / "limits" / "key-usage.png"), full_page=True)
    generation = links.first.inner_text()
    links.first.click()
    page.wait_for_url(f"{site}/usage/requests/{generation}/")
    expect(page.get_by_text(generation).first).to_be_visible()
