"""Fallback, breaker and billing through real gunicorn, Celery and emulators.

Health probes are effectively off here (a one-hour interval) so the faults
injected into the primary only reach it through client requests; probes
have their own module (test_e2e_health.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from providers.emulators.testing import RunningEmulator
from tests.e2e.conftest import (
    REREAD_SECONDS,
    Client,
    Stack,
    chat_hits,
    running_stack,
    usage_row,
)


@pytest.fixture(scope="module")
def stack(django_db_setup: None) -> Iterator[Stack]:
    with running_stack({"XROUTER_HEALTH_INTERVAL_SECONDS": "3600"}) as running:
        yield running


def _price(row: Any, prompt: str, completion: str) -> Decimal:
    return (
        Decimal(prompt) * row.prompt_tokens + Decimal(completion) * row.completion_tokens
    ) / 1000


def test_primary_503_is_served_by_the_fallback_and_billed_once(
    client: Client, primary: RunningEmulator, backup: RunningEmulator
) -> None:
    """Headers and the usage chain name both attempts; only the backup is billed."""
    primary.control.set_config(fault="http_503")
    response = client.chat("team/chat")
    assert response.status_code == 200, response.text
    assert response.headers["x-xrouter-provider"] == "backup"
    assert response.headers["x-xrouter-model"] == "team/chat"
    assert response.headers["x-xrouter-attempts"] == "primary:503, backup:200"
    body = response.json()
    row = usage_row(response.headers["X-Request-ID"])
    assert row.provider == "backup" and row.status == 200
    assert [(a["provider"], a["status"]) for a in row.attempts] == [
        ("primary", 503),
        ("backup", 200),
    ]
    # Exactly the served attempt's tokens at team/chat's price; nothing for the 503.
    assert row.prompt_tokens == body["usage"]["prompt_tokens"]
    assert row.completion_tokens == body["usage"]["completion_tokens"]
    assert row.cost_rub == _price(row, "1.5", "3")
    assert (chat_hits(primary), chat_hits(backup)) == (1, 1)


def test_primary_timeout_falls_back_within_the_deadline(
    client: Client, primary: RunningEmulator, stack: Stack
) -> None:
    """A hanging primary costs its 1 s read timeout, then the backup answers."""
    primary.control.set_config(fault="timeout")
    started = time.monotonic()
    response = client.chat("team/chat")
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.headers["x-xrouter-attempts"] == "primary:504, backup:200"
    deadline = float(stack.env["XROUTER_REQUEST_DEADLINE_SECONDS"])
    assert 1.0 <= elapsed < min(2.5, deadline)
    row = usage_row(response.headers["X-Request-ID"])
    assert [a["status"] for a in row.attempts] == [504, 200]


def test_both_down_is_503_in_openai_shape_naming_both(
    client: Client, primary: RunningEmulator, backup: RunningEmulator
) -> None:
    """Every upstream failing is one 503 with OpenAI's error object; nothing is billed."""
    primary.control.set_config(fault="http_500")
    backup.control.set_config(fault="http_503")
    response = client.chat("team/chat")
    assert response.status_code == 503
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert error["code"] == "all_upstreams_failed"
    assert "team/chat via primary" in error["message"]
    assert "team/chat via backup" in error["message"]
    assert response.headers["x-xrouter-attempts"] == "primary:502, backup:503"
    row = usage_row(response.headers["X-Request-ID"])
    assert row.status == 503 and row.cost_rub == 0
    assert row.prompt_tokens == 0 and row.completion_tokens == 0


def test_stream_cut_after_the_first_byte_ends_with_an_error_event(
    client: Client, primary: RunningEmulator, backup: RunningEmulator
) -> None:
    """Bytes reached the client: no switch to the backup, a terminal error event."""
    primary.control.set_config(fault="cut")
    response = client.chat("team/chat", stream=True)
    assert response.status_code == 200
    assert response.headers["x-xrouter-provider"] == "primary"
    events = [
        line[len(b"data: ") :] for line in response.iter_lines() if line.startswith(b"data: ")
    ]
    assert events[-1] != b"[DONE]"
    content = [json.loads(e) for e in events[:-1]]
    assert content and all("choices" in c for c in content)
    error = json.loads(events[-1])["error"]
    assert error["code"] and error["message"]
    assert chat_hits(backup) == 0
    row = usage_row(response.headers["X-Request-ID"])
    assert row.provider == "primary" and row.stream_complete is False
    # Billed for what was delivered, at the primary's price.
    assert row.completion_tokens > 0
    assert row.cost_rub == _price(row, "1.5", "3")


def test_breaker_opens_and_then_requests_skip_the_dead_deployment(
    client: Client, primary: RunningEmulator, backup: RunningEmulator
) -> None:
    """After 3 timeouts (shared across both workers) the primary is skipped at once."""
    primary.control.set_config(fault="timeout")
    slow = []
    for _ in range(3):
        started = time.monotonic()
        response = client.chat("team/chat")
        slow.append(time.monotonic() - started)
        assert response.headers["x-xrouter-attempts"] == "primary:504, backup:200"
    assert min(slow) >= 1.0
    assert chat_hits(primary) == 3
    # Each worker re-reads the shared breaker states at most once a second:
    # the bound under test (REREAD_SECONDS), not a guess.
    time.sleep(REREAD_SECONDS)
    fast = []
    for _ in range(6):
        started = time.monotonic()
        response = client.chat("team/chat")
        fast.append(time.monotonic() - started)
        assert response.status_code == 200
        assert response.headers["x-xrouter-provider"] == "backup"
    assert chat_hits(primary) == 3  # never called again
    # Well under the 1 s the primary would cost: it is not even tried.
    assert max(fast) < 0.8, fast
    row = usage_row(response.headers["X-Request-ID"])
    assert [(a["provider"], a["error_code"]) for a in row.attempts] == [
        ("primary", "breaker_open"),
        ("backup", ""),
    ]


def test_models_list_is_tried_in_order(client: Client, primary: RunningEmulator) -> None:
    """``models: [...]`` is tried in the order given, after the requested model."""
    primary.control.set_config(fault="http_503")
    first = client.chat("only/primary", models=["solo/backup", "solo/third"])
    assert first.headers["x-xrouter-model"] == "solo/backup"
    assert first.headers["x-xrouter-attempts"] == "primary:503, backup:200"
    assert first.json()["model"] == "solo/backup"
    second = client.chat("only/primary", models=["solo/third", "solo/backup"])
    assert second.headers["x-xrouter-model"] == "solo/third"
    row = usage_row(second.headers["X-Request-ID"])
    assert row.requested_model == "only/primary" and row.served_model == "solo/third"
    assert row.cost_rub == _price(row, "4", "4")
