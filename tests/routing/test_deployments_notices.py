"""The deployments page also warns about deprecated versions and the limiter."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from accounts.models import Team
from routing.limits.limiter import limiter
from routing.limits.types import Limit
from tests.accounts.cast import Cast, build_cast

CATALOG = """
providers:
  - {name: yandex, kind: openai, base_url: "http://127.0.0.1:9/v1", api_key_env: TEST_UPSTREAM_KEY}
models:
  - id: yandex/yandexgpt
    provider: yandex
    upstream: yandexgpt
    versions:
      latest: {since: 2025-02-09}
      rc: {since: 2025-07-21, until: 2099-09-01}
      deprecated: {since: 2025-02-09, until: 2099-10-01}
"""


@pytest.fixture
def cast(team: Team, other_team: Team, load_catalog: Callable[[str], None]) -> Cast:
    load_catalog(CATALOG)
    return build_cast(team=team, other_team=other_team)


def test_deprecated_versions_and_upcoming_changes_are_announced(cast: Cast) -> None:
    html = cast.client_for(cast.bob).get("/routing/deployments/").content.decode()
    notice = html[html.index('data-testid="deprecated-notice"') :]
    notice = notice[: notice.index("</div>")]
    assert "yandex/yandexgpt:deprecated" in notice
    assert "yandex/yandexgpt:rc" not in notice
    assert dt.date(2099, 10, 1).strftime("%Y") in notice
    assert "yandex/yandexgpt:rc" in html and "becomes latest" in html


def test_russian_notice(cast: Cast) -> None:
    client = cast.client_for(cast.bob)
    html = client.get("/routing/deployments/", headers={"accept-language": "ru"}).content.decode()
    assert "Эти версии моделей устарели" in html


def test_limiter_state_shows_a_redis_outage(cast: Cast, settings: Any) -> None:
    client = cast.client_for(cast.bob)
    assert "Limits are enforced in Redis" in client.get("/routing/deployments/").content.decode()
    settings.XROUTER_LIMITER_REDIS_URL = "redis://127.0.0.1:1/0"
    limiter.reset()
    limiter.acquire([Limit("r", "key", "rl:{t0}:probe", 10, 1, 60_000)])
    html = client.get("/routing/deployments/").content.decode()
    state = html[html.index('data-testid="limiter-state"') :]
    assert "Redis unreachable" in state
    assert "fell back once" in state
