"""Slowloris against real gunicorn (issue 15, Medium 8).

~8,000 idle half-sent requests from one client took the gateway offline.
Here one worker with room for 200 connections gets 300 half-sent requests
from one address (127.0.0.2, loopback) and still answers everyone else
(127.0.0.1) at once; the half-sent ones are closed within the header
timeout, even when they trickle a byte at a time.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from keys.services import CreatedKey
from tests.gateway_process import running_gateway

pytestmark = pytest.mark.slow

ATTACKS = 300
ENV = {
    "XROUTER_HEADER_TIMEOUT": "2",
    "XROUTER_MAX_CONNECTIONS_PER_IP": "50",
    "XROUTER_WORKER_CONNECTIONS": "200",
}
HALF_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


def _open(host: str, port: int) -> socket.socket | None:
    sock = socket.socket()
    sock.settimeout(2)
    sock.bind(("127.0.0.2", 0))
    try:
        sock.connect((host, port))
        sock.sendall(HALF_REQUEST)
    except OSError:
        sock.close()
        return None
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


@contextlib.contextmanager
def _attack(host: str, port: int) -> Iterator[list[socket.socket]]:
    sockets = [s for s in (_open(host, port) for _ in range(ATTACKS)) if s is not None]
    try:
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def test_gateway_answers_during_a_slowloris(transactional_db: None, api_key: CreatedKey) -> None:
    with running_gateway(workers=1, env=ENV) as gateway:
        parts = urlsplit(gateway.url)
        host, port = parts.hostname or "127.0.0.1", int(parts.port or 80)
        with _attack(host, port) as sockets:
            time.sleep(0.3)
            # Beyond 50 per address, connections are closed at accept.
            refused = sum(_closed_by_server(s) for s in sockets)
            assert refused >= ATTACKS - 50 - 5, refused
            started = time.monotonic()
            health = requests.get(gateway.url + "/healthz", timeout=3)
            models = requests.get(
                gateway.url + "/v1/models",
                headers={"Authorization": f"Bearer {api_key.plaintext}"},
                timeout=3,
            )
            assert (health.status_code, models.status_code) == (200, 200)
            assert time.monotonic() - started < 1.5
            # Within the header timeout every half-sent request is closed.
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline and not all(map(_closed_by_server, sockets)):
                time.sleep(0.2)
            assert all(_closed_by_server(s) for s in sockets)
        assert "connection refused: 127.0.0.2 holds 50 connections" in gateway.log()


def test_trickled_headers_are_cut_at_the_deadline(transactional_db: None) -> None:
    """A byte every 0.3 s never finishes the headers: the total time is bounded."""
    with running_gateway(workers=1, env=ENV) as gateway:
        parts = urlsplit(gateway.url)
        sock = socket.create_connection((parts.hostname, parts.port), timeout=5)
        started = time.monotonic()
        sock.sendall(HALF_REQUEST)
        closed_after = None
        for _ in range(30):  # at most ~9 s
            try:
                sock.sendall(b"a")
            except OSError:
                closed_after = time.monotonic() - started
                break
            if _closed_by_server(sock):
                closed_after = time.monotonic() - started
                break
            time.sleep(0.3)
        sock.close()
        assert closed_after is not None and 1.5 < closed_after < 4.0, closed_after
