"""The usage charts in Chromium: readable labels, values on hover and on focus.

A team with a week of rolled-up usage and a few requests since the last
roll-up: today's bar must show those at once, every axis label must be at
least 11 px tall at a laptop's and a phone's width, and hovering a day, or
reaching it with the keyboard, must show its exact values.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from playwright.sync_api import expect

from accounts.services import team_create, user_signup
from keys.services import api_key_create
from routing.models import UsageRecord
from routing.usage import rollups
from tests.conftest import openai_catalog

pytestmark = pytest.mark.slow

LABEL_SIZES = """
() => [...document.querySelectorAll('.chart-y li, .chart-x li, .legend li')]
  .filter(e => e.textContent.trim() && getComputedStyle(e).visibility !== 'hidden')
  .map(e => [e.textContent.trim(), parseFloat(getComputedStyle(e).fontSize),
             e.getBoundingClientRect().height])
"""


def record(team: Any, key: Any, when: Any, n: int, latency: int) -> UsageRecord:
    return UsageRecord(
        request_id=f"req-{when.timestamp():.0f}-{n}",
        created_at=when,
        team=team,
        key=key,
        endpoint="chat",
        requested_model="local/mock",
        served_model="local/mock",
        provider="local",
        prompt_tokens=100,
        completion_tokens=50,
        cost_rub=Decimal("0.125"),
        status=200,
        latency_ms=latency,
    )


@pytest.fixture
def site(
    transactional_db: None, live_server: Any, load_catalog: Callable[[str], None]
) -> dict[str, str]:
    load_catalog(openai_catalog("http://127.0.0.1:9"))
    user = user_signup(username="ira", email="ira@example.com", password="x" * 20)
    team = team_create(name="Charts", owner=user)
    key = api_key_create(team=team, name="backend", created_by=user).api_key
    now = timezone.now()
    UsageRecord.objects.bulk_create(
        record(team, key, now - timedelta(days=day, hours=1), n, 200 + 50 * n)
        for day in range(1, 7)
        for n in range(day)
    )
    rollups.usage_rollup_range(start=(now - timedelta(days=7)).date(), end=now.date())
    # Three requests after the last roll-up: today must not read zero.
    UsageRecord.objects.bulk_create(
        record(team, key, timezone.now() + timedelta(seconds=1), n, 300) for n in range(3)
    )
    client = Client()
    client.force_login(user)
    return {"url": str(live_server.url), "session": client.cookies["sessionid"].value}


@pytest.mark.parametrize("language", ["en", "ru"])
def test_labels_are_readable_and_days_show_values(
    language: str, site: dict[str, str], chromium: Any, screenshot_dir: Path
) -> None:
    """Labels >= 11 px at 1366 and 390 px; hover and focus show a day's values."""
    for width, height in ((1366, 900), (390, 844)):
        context = chromium.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(10_000)
        context.add_cookies(
            [
                {"name": "sessionid", "value": site["session"], "url": site["url"]},
                {"name": "django_language", "value": language, "url": site["url"]},
            ]
        )
        try:
            page = context.new_page()
            page.goto(site["url"] + "/usage/")
            requests_chart = page.locator("section.chart-card").first
            labels = page.evaluate(LABEL_SIZES)
            assert len(labels) > 20, labels
            small = [label for label in labels if label[1] < 11 or label[2] < 11]
            assert not small, (width, small)

            today = requests_chart.locator(".chart-slot").last
            tip = today.locator(".chart-tip")
            assert tip.bounding_box() is None or tip.bounding_box()["width"] <= 1
            today.hover()
            expect(tip).to_be_visible()
            expect(tip).to_contain_text("local/mock: 3")
            assert tip.bounding_box()["width"] > 60
            page.screenshot(path=str(screenshot_dir / f"usage-chart-hover-{language}-{width}.png"))

            # Keyboard: one tab stop per chart (today), arrows move by a day.
            page.mouse.move(0, 0)
            today.focus()
            page.keyboard.press("ArrowLeft")
            yesterday = requests_chart.locator(".chart-slot").nth(-2)
            expect(yesterday).to_be_focused()
            expect(yesterday.locator(".chart-tip")).to_contain_text("local/mock: 1")
            assert yesterday.get_attribute("tabindex") == "0"
            assert today.get_attribute("tabindex") == "-1"

            latency = page.locator("section.chart-card").last
            assert latency.locator("svg polyline").count() >= 2
            assert latency.locator("svg circle").count() == 0
            # Today's three requests took 300 ms: p50 lies in the 200-300 ms bucket.
            latency.locator(".chart-slot").last.hover()
            expect(latency.locator(".chart-tip").last).to_contain_text(
                "p50: 250 ms" if language == "en" else "p50: 250 мс"
            )
        finally:
            context.close()
