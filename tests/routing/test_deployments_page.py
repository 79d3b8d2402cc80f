"""The deployments dashboard page: health, latency, breaker; readable by members."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from accounts.models import Team
from routing.breaker import breakers
from routing.health import health_record
from routing.models import Deployment
from tests.accounts.cast import Cast, build_cast

CATALOG = """
providers:
  - {name: sber, kind: openai, base_url: "http://127.0.0.1:9/v1", api_key_env: TEST_UPSTREAM_KEY}
  - {name: yandex, kind: openai, base_url: "http://127.0.0.1:8/v1", api_key_env: TEST_UPSTREAM_KEY}
models:
  - id: team/chat
    deployments:
      - {provider: sber, upstream: giga-mock, priority: 0}
      - {provider: yandex, upstream: yagpt-mock, priority: 1}
  - id: team/other
    provider: yandex
    upstream: other-mock
"""


@pytest.fixture
def cast(team: Team, other_team: Team, load_catalog: Callable[[str], None]) -> Cast:
    load_catalog(CATALOG)
    return build_cast(team=team, other_team=other_team)


def _id(upstream: str) -> int:
    return Deployment.objects.get(upstream=upstream).pk


def _row(html: str, deployment_id: int) -> str:
    start = html.index(f'data-deployment="{deployment_id}"')
    return html[start : html.index("</tr>", start)]


def test_page_needs_login(cast: Cast) -> None:
    response = Client().get("/routing/deployments/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_member_sees_health_latency_and_breaker(cast: Cast, settings: Any) -> None:
    """A plain member reads every deployment's state; no URL or secret is shown."""
    settings.XROUTER_BREAKER_FAILURES = 2
    health_record(deployment_id=_id("giga-mock"), healthy=True, latency_ms=42.4)
    health_record(
        deployment_id=_id("yagpt-mock"),
        healthy=False,
        latency_ms=None,
        error="503 upstream_unavailable: yandex is unavailable",
    )
    for _ in range(2):
        breakers.record_failure(_id("yagpt-mock"))
    response = cast.client_for(cast.bob).get("/routing/deployments/")
    assert response.status_code == 200
    html = response.content.decode()
    up = _row(html, _id("giga-mock"))
    assert "team/chat" in up and "sber" in up and "giga-mock" in up
    assert 'data-health="up"' in up and "42 ms" in up and 'data-breaker="closed"' in up
    down = _row(html, _id("yagpt-mock"))
    assert 'data-health="down"' in down and "yandex is unavailable" in down
    assert 'data-breaker="open"' in down
    other = _row(html, _id("other-mock"))
    assert 'data-health="unknown"' in other and "never" in other
    assert "127.0.0.1:9" not in html and "TEST_UPSTREAM_KEY" not in html
    assert 'href="/routing/deployments/" aria-current="page"' in html


def test_half_open_breaker_is_shown(cast: Cast, settings: Any) -> None:
    """After the cooldown the breaker reads half-open until a probe request settles it."""
    settings.XROUTER_BREAKER_FAILURES = 1
    settings.XROUTER_BREAKER_COOLDOWN_SECONDS = 0.0
    breakers.record_failure(_id("giga-mock"))
    html = cast.client_for(cast.bob).get("/routing/deployments/").content.decode()
    assert 'data-breaker="half-open"' in _row(html, _id("giga-mock"))


def test_page_in_russian(cast: Cast) -> None:
    client = cast.client_for(cast.alice)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "ru"
    html = client.get("/routing/deployments/").content.decode()
    assert "Развёртывания" in html and "Предохранитель" in html and "Ещё не проверялось" in html
