"""The gateway as it runs in production: gunicorn with gevent workers."""

from __future__ import annotations

import socket
import time
from typing import Any

import orjson
import pytest
import requests

from keys.services import api_key_revoke
from tests.conftest import openai_catalog
from tests.gateway_process import running_gateway
from tests.waiting import wait_until

pytestmark = pytest.mark.slow
BODY = {"model": "local/mock", "messages": [{"role": "user", "content": "hi"}]}


def _hit_every_worker(url: str, headers: dict[str, str], workers: int) -> None:
    """Send requests until each worker has served (and cached) the key."""
    pids: set[str] = set()
    deadline = time.monotonic() + 10
    while len(pids) < workers and time.monotonic() < deadline:
        response = requests.get(url + "/v1/models", headers=headers, timeout=5)
        assert response.status_code == 200
        pids.add(response.headers["X-Served-By"])
    assert len(pids) == workers, "every worker served the key before revocation"


@pytest.mark.parametrize("shared_cache", [True, False], ids=["redis", "zero-config"])
def test_revocation_reaches_every_worker_within_one_second(
    transactional_db: None,
    make_key: Any,
    load_catalog: Any,
    upstream: Any,
    shared_cache: bool,
) -> None:
    load_catalog(openai_catalog(upstream.base_url))
    created = make_key()
    headers = {"Authorization": f"Bearer {created.plaintext}"}
    env = {"XROUTER_DEBUG_SERVED_BY": "true"}
    if not shared_cache:
        env["REDIS_URL"] = ""
    with running_gateway(workers=2, env=env) as gateway:
        _hit_every_worker(gateway.url, headers, 2)
        api_key_revoke(api_key=created.api_key)
        revoked_at = time.monotonic()
        late_successes = []
        while (elapsed := time.monotonic() - revoked_at) < 2.0:
            status = requests.get(
                gateway.url + "/v1/models", headers=headers, timeout=5
            ).status_code
            if status == 200 and elapsed > 1.0:
                late_successes.append(round(elapsed, 3))
            time.sleep(0.01)  # pacing a fixed watch: every answer in it counts
        assert late_successes == []
        assert (
            requests.get(gateway.url + "/v1/models", headers=headers, timeout=5).status_code == 401
        )


def test_client_disconnect_closes_the_upstream_stream(
    transactional_db: None,
    make_key: Any,
    load_catalog: Any,
    upstream: Any,
) -> None:
    load_catalog(openai_catalog(upstream.base_url))
    upstream.control.reset()
    upstream.control.set_config(stream_tokens=200, chunk_interval_ms=50)  # a 10 s stream
    key = make_key().plaintext
    try:
        with running_gateway(workers=1) as gateway:
            port = int(gateway.url.rsplit(":", 1)[1])
            body = orjson.dumps({**BODY, "stream": True})
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                + f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n".encode()
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            received = b""
            while received.count(b"data: ") < 3:
                received += sock.recv(4096)
            assert b"200 OK" in received
            sock.close()
            wait_until(
                lambda: upstream.control.stats()["streams_closed_early"] == 1,
                timeout=2.0,
                what="the upstream stream to be closed early",
            )
            stats = upstream.control.stats()
            assert stats["streams_closed_early"] == 1
            assert stats["streams_completed"] == 0
            assert stats["open_streams"] == 0

            # The gateway logged the stream as partial.
            def stream_lines() -> list[dict[str, Any]]:
                lines = [
                    orjson.loads(line)
                    for line in gateway.log().splitlines()
                    if line.startswith("{") and '"xrouter.access"' in line
                ]
                return [line for line in lines if line.get("stream")]

            wait_until(stream_lines, timeout=5, what="the stream's access log line")
            assert stream_lines()[-1]["stream_complete"] is False
    finally:
        upstream.control.reset()


def test_stream_cut_by_upstream_reaches_the_client_as_an_error_event(
    transactional_db: None,
    make_key: Any,
    load_catalog: Any,
    upstream: Any,
) -> None:
    load_catalog(openai_catalog(upstream.base_url))
    upstream.control.reset()
    upstream.control.set_config(fault="cut", stream_tokens=10, chunk_interval_ms=5)
    key = make_key().plaintext
    try:
        with running_gateway(workers=1) as gateway:
            response = requests.post(
                gateway.url + "/v1/chat/completions",
                data=orjson.dumps({**BODY, "stream": True}),
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                timeout=10,
                stream=True,
            )
            events = [line for line in response.iter_lines() if line.startswith(b"data: ")]
            assert len(events) >= 2
            last = orjson.loads(events[-1][6:])
            assert last["error"]["code"] == "upstream_stream_cut"
            assert b"data: [DONE]" not in events
    finally:
        upstream.control.reset()


def test_gateway_serves_many_concurrent_streams(
    transactional_db: None,
    make_key: Any,
    load_catalog: Any,
    upstream: Any,
) -> None:
    """Streams are relayed concurrently by gevent, not one after another.

    Asserted on order, not on time (the machine's load moves time): how many
    streams were open at once, from each one's first and last byte. One
    after another would give 1.
    """
    from concurrent.futures import ThreadPoolExecutor

    load_catalog(openai_catalog(upstream.base_url))
    upstream.control.reset()
    upstream.control.set_config(stream_tokens=40, chunk_interval_ms=50)  # 2 s each
    key = make_key().plaintext
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def one(_: int) -> tuple[float, float, int]:
        response = requests.post(
            gateway.url + "/v1/chat/completions",
            data=orjson.dumps({**BODY, "stream": True}),
            headers=headers,
            timeout=60,
            stream=True,
        )
        lines = response.iter_lines()
        next(line for line in lines if line.startswith(b"data: "))
        opened = time.monotonic()
        done = sum(1 for line in lines if line == b"data: [DONE]")
        return opened, time.monotonic(), done

    try:
        with running_gateway(workers=1) as gateway, ThreadPoolExecutor(50) as pool:
            spans = list(pool.map(one, range(50)))
        assert [done for _, _, done in spans] == [1] * 50
        edges = sorted(
            [(opened, 1) for opened, _, _ in spans] + [(closed, -1) for _, closed, _ in spans]
        )
        open_now = most_open = 0
        for _, step in edges:
            open_now += step
            most_open = max(most_open, open_now)
        assert most_open >= 25, f"at most {most_open} of 50 streams were open at once"
    finally:
        upstream.control.reset()


def test_a_full_worker_sheds_load_with_503_instead_of_queueing(
    transactional_db: None,
    make_key: Any,
    load_catalog: Any,
    upstream: Any,
) -> None:
    load_catalog(openai_catalog(upstream.base_url))
    upstream.control.reset()
    upstream.control.set_config(stream_tokens=20, chunk_interval_ms=50)  # 1 s streams
    key = make_key().plaintext
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    try:
        env = {"XROUTER_MAX_INFLIGHT_PER_WORKER": "2"}
        with running_gateway(workers=1, env=env) as gateway:
            streams = [
                requests.post(
                    gateway.url + "/v1/chat/completions",
                    headers=headers,
                    timeout=10,
                    data=orjson.dumps({**BODY, "stream": True}),
                    stream=True,
                )
                for _ in range(2)
            ]
            started = time.monotonic()
            shed = requests.post(
                gateway.url + "/v1/chat/completions",
                headers=headers,
                data=orjson.dumps(BODY),
                timeout=10,
            )
            assert time.monotonic() - started < 0.5
            assert shed.status_code == 503
            assert shed.json()["error"]["code"] == "server_overloaded"
            assert shed.headers["Retry-After"] == "1"
            for response in streams:
                assert b"data: [DONE]" in response.content
            # The finished streams gave their places back.
            ok = requests.post(
                gateway.url + "/v1/chat/completions",
                headers=headers,
                data=orjson.dumps(BODY),
                timeout=10,
            )
            assert ok.status_code == 200
    finally:
        upstream.control.reset()
