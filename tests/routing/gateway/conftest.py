"""The zero-config stack: the demo catalog of ``manage.py serve`` on its emulators."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from keys.services import CreatedKey
from providers.emulators.testing import RunningEmulator, start_emulator
from routing.management.commands.serve import DEMO_EMULATORS, DEMO_MODELS
from tests.conftest import LiveGateway

DEMO_GIGACHAT_KEY = base64.b64encode(b"demo:gateway-tests").decode()


@pytest.fixture(scope="module")
def demo_emulators() -> Iterator[dict[str, RunningEmulator]]:
    """One emulator per provider kind of the demo catalog, as `make run` starts them."""
    running: dict[str, RunningEmulator] = {}
    try:
        for kind in DEMO_EMULATORS:
            running[kind] = start_emulator(kind, stream_tokens=6, chunk_interval_ms=2)
        yield running
    finally:
        for emulator in running.values():
            emulator.stop()


@pytest.fixture
def demo(
    live_server: Any,
    transactional_db: None,
    demo_emulators: dict[str, RunningEmulator],
    load_catalog: Callable[[str], None],
    make_key: Callable[..., CreatedKey],
    monkeypatch: pytest.MonkeyPatch,
) -> LiveGateway:
    """The gateway with exactly the demo catalog `make run` writes."""
    monkeypatch.setenv("XROUTER_DEMO_UPSTREAM_KEY", "demo-upstream-key")
    monkeypatch.setenv("XROUTER_DEMO_GIGACHAT_KEY", DEMO_GIGACHAT_KEY)
    providers = ""
    for kind, entry in DEMO_EMULATORS.items():
        emulator = demo_emulators[kind]
        emulator.control.reset()
        providers += entry.format(port=urlsplit(emulator.base_url).port)
    load_catalog("providers:" + providers + DEMO_MODELS)
    return LiveGateway(live_server.url, make_key().plaintext)
