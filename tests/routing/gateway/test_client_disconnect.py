"""A client that hangs up before the first upstream byte stops the upstream call.

Real gunicorn workers (gevent) in front of an upstream that stays silent:
the client sends a request and closes its socket; the upstream must see the
gateway's connection close within 2 s, and the request is recorded as 499
with nothing billed.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest

from keys.services import CreatedKey
from routing.models import UsageRecord
from routing.usage import records as usage
from tests.conftest import openai_catalog
from tests.gateway_process import running_gateway
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def silent_upstream(transactional_db: None, load_catalog: Any, upstream: Any) -> Iterator[Any]:
    load_catalog(openai_catalog(upstream.base_url))
    upstream.control.reset()
    upstream.control.set_config(fault="timeout", timeout_s=30)
    yield upstream
    upstream.control.reset()


def _open_request(
    url: str, key: str, body: dict[str, Any], path: str = "/v1/chat/completions"
) -> socket.socket:
    """Send one request on a raw socket and return the still-open socket."""
    parts = urlsplit(url)
    payload = orjson.dumps(body)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    sock.sendall(head + payload)
    return sock


def _send_and_hang_up(url: str, key: str, body: dict[str, Any], wait: float) -> float:
    """Send one request on a raw socket, wait, close it; return the close time."""
    sock = _open_request(url, key, body)
    time.sleep(wait)
    sock.close()
    return time.monotonic()


def _wait_abandoned(upstream: Any, count: int, limit: float) -> float:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        stats = upstream.control.stats()
        if stats["hangs_abandoned"] >= count and stats["open_hangs"] == 0:
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"the upstream call was not stopped: {upstream.control.stats()}")


def _records() -> list[UsageRecord]:
    sink = usage.stream_sink()
    deadline = time.monotonic() + 10
    while True:
        if sink is not None:
            while sink.consume_once(block_ms=10):
                pass
        rows = list(UsageRecord.objects.order_by("id"))
        if len(rows) >= 2 or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_hang_up_before_the_first_byte_closes_the_upstream_call(
    silent_upstream: Any, make_key: Any
) -> None:
    """Plain and streamed requests: upstream sees the close in < 2 s; 499, nothing billed."""
    key: CreatedKey = make_key(concurrency_limit=1)
    base = {"model": "local/mock", "messages": [{"role": "user", "content": "hi"}]}
    with running_gateway(workers=1) as gateway:
        for n, body in enumerate(({**base}, {**base, "stream": True}), start=1):
            # Wait until the upstream holds the call, then hang up.
            closed = _send_and_hang_up(gateway.url, key.plaintext, body, wait=1.0)
            assert silent_upstream.control.stats()["requests_total"] == n
            stopped = _wait_abandoned(silent_upstream, n, limit=5)
            assert stopped - closed < 2.0, stopped - closed
    rows = _records()
    assert [(r.status, r.error_code) for r in rows] == [(499, "client_disconnected")] * 2
    assert all(r.cost_rub == 0 and r.completion_tokens == 0 for r in rows)
    # The second request got the key's only concurrency slot: the first
    # one's was released when its client left.
    assert [r.stream for r in rows] == [False, True]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v1/messages",
            {
                "model": "local/mock",
                "max_tokens": 20,
                "messages": [{"role": "user", "content": "hi"}],
            },
        ),
        ("/v1/responses", {"model": "local/mock", "input": "hi", "stream": True}),
    ],
    ids=["messages", "responses-stream"],
)
def test_every_surface_stops_the_upstream_when_its_client_hangs_up(
    silent_upstream: Any, make_key: Any, path: str, body: dict[str, Any]
) -> None:
    """The new surfaces share the watch: the upstream call stops, 499, nothing billed."""
    key: CreatedKey = make_key()
    with running_gateway(workers=1) as gateway:
        sock = _open_request(gateway.url, key.plaintext, body, path)
        # Hang up once the upstream holds the call.
        wait_until(
            lambda: silent_upstream.control.stats()["open_hangs"] == 1,
            timeout=10,
            what="the upstream to hold the call",
        )
        sock.close()
        _wait_abandoned(silent_upstream, 1, limit=5)
    sink = usage.stream_sink()
    rows: list[UsageRecord] = []

    def recorded() -> bool:
        if sink is not None:
            while sink.consume_once(block_ms=10):
                pass
        rows[:] = list(UsageRecord.objects.all())
        return bool(rows)

    wait_until(recorded, timeout=10, what="the usage record")
    assert [(r.status, r.error_code, r.cost_rub) for r in rows] == [(499, "client_disconnected", 0)]
