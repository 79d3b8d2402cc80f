"""Shared fixtures: a small cast (team, keys) and a live gateway.

Data is created through services so tests walk the production path.
Provider emulators are real processes (``providers.emulators.testing``);
the gateway under test is either Django's ``live_server`` (fast, in-process)
or real gunicorn processes (``tests/gateway_process.py``) where worker
behaviour matters.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.utils import translation

from accounts.models import Team
from accounts.services import team_get_or_create
from keys.services import CreatedKey, api_key_create
from routing import table

# The gateway imports every per-process singleton, each registering its reset.
from routing.gateway import views as _gateway  # noqa: F401
from routing.services import catalog_load, parse_catalog
from xrouter_site.state import reset_process_state

IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    """Each test starts and ends with no per-process state (caches, table, sinks)."""
    reset_process_state()
    # A test may have stopped Redis on purpose.
    with contextlib.suppress(Exception):
        cache.clear()
    yield
    # Also drops unwritten key activity: at exit the test database is gone.
    reset_process_state()
    # A Russian request (or translation.activate) must not leak its language
    # into the next test's messages.
    translation.deactivate()


@pytest.fixture
def team(db: None) -> Team:
    return team_get_or_create(slug="acme", name="Acme")[0]


@pytest.fixture
def other_team(db: None) -> Team:
    return team_get_or_create(slug="globex", name="Globex")[0]


@pytest.fixture
def make_key(team: Team) -> Callable[..., CreatedKey]:
    def make(**kwargs: Any) -> CreatedKey:
        kwargs.setdefault("team", team)
        kwargs.setdefault("name", "test key")
        return api_key_create(**kwargs)

    return make


@pytest.fixture
def api_key(make_key: Callable[..., CreatedKey]) -> CreatedKey:
    return make_key()


@pytest.fixture
def load_catalog(db: None) -> Callable[[str], None]:
    """Load a catalog YAML text, as ``XROUTER_CATALOG`` would at start-up."""

    def load(text: str) -> None:
        catalog_load(parse_catalog(text))
        table.reset_table()

    return load


def openai_catalog(base_url: str, *, prefix: str = "local") -> str:
    """A catalog with one OpenAI-compatible provider at ``base_url``."""
    return f"""
providers:
  - name: {prefix}
    kind: openai
    base_url: {base_url}/v1
    api_key_env: TEST_UPSTREAM_KEY
models:
  - id: {prefix}/mock
    provider: {prefix}
    upstream: gpt-mock
    pricing: {{prompt: 0.5, completion: 1.5}}
  - id: {prefix}/embed
    type: embedding
    provider: {prefix}
    upstream: text-embedding-mock
"""


@pytest.fixture(autouse=True)
def _upstream_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "upstream-secret-for-tests")


@pytest.fixture(scope="session")
def upstream() -> Iterator[Any]:
    """One OpenAI-compatible emulator process for the whole session.

    Tests that change its config reset it through ``upstream_control``.
    """
    from providers.emulators.testing import start_emulator

    emulator = start_emulator("openai", stream_tokens=8, chunk_interval_ms=5)
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def upstream_control(upstream: Any) -> Iterator[Any]:
    """The session emulator's control client, reset before and after a test."""
    upstream.control.reset()
    yield upstream.control
    upstream.control.reset()


class LiveGateway:
    """The gateway served by ``live_server`` with a catalog and a key."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.key = key

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}

    def client(self, **kwargs: Any) -> Any:
        import openai

        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 10)
        return openai.OpenAI(base_url=self.url + "/v1", api_key=self.key, **kwargs)


@pytest.fixture
def gateway(
    live_server: Any,
    transactional_db: None,
    upstream_control: Any,
    upstream: Any,
    load_catalog: Callable[[str], None],
    make_key: Callable[..., CreatedKey],
) -> LiveGateway:
    load_catalog(openai_catalog(upstream.base_url))
    return LiveGateway(live_server.url, make_key().plaintext)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One headless Chromium (Debian's binary, never downloaded) per session.

    Playwright's sync API runs an event loop in this thread until the session
    ends, and only one may run: every browser test shares this fixture. The
    test's own ORM calls stay synchronous, so Django's async-safety guard
    stands down for the rest of the session; subprocess tests that must not
    inherit it (check --deploy) remove it from their environment.
    """
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In CI a skipped test is a failed test: nothing may skip silently."""
    if not IN_CI:
        return
    for item in items:
        for marker in item.iter_markers(name="skip"):
            item.add_marker(
                pytest.mark.xfail(reason=f"skip in CI: {marker.kwargs}", strict=True, run=False)
            )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which must run everything: {report.longrepr}"
