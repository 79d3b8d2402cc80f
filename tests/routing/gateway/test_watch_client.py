"""watch_client under gevent: a hang-up interrupts the wait, anything else does not.

The gateway's process tests (test_client_disconnect.py) cover a hang-up end
to end; this pins each case of the watch itself, in a monkey-patched child
process (the test process is not patched, where the watch is a no-op).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = """
from gevent import monkey; monkey.patch_all()
import socket, gevent
from routing.gateway.disconnect import ClientDisconnected, watch_client

def case(action, wait=0.3):
    a, b = socket.socketpair()
    gevent.spawn_later(0.05, action, b)
    try:
        with watch_client({"gunicorn.socket": a}):
            gevent.sleep(wait)
        outcome = "finished"
    except ClientDisconnected:
        outcome = "disconnected"
    # Whatever came in is still there for the next request to read.
    a.setblocking(False)
    try:
        left = a.recv(100)
    except BlockingIOError:
        left = None
    return outcome, left

print("close", *case(lambda b: b.close()))
print("half-closed", *case(lambda b: b.shutdown(socket.SHUT_WR)))
print("pipelined", *case(lambda b: b.send(b"GET / HTTP/1.1\\r\\n")))
print("quiet", *case(lambda b: None))
a, b = socket.socketpair()
with watch_client({"gunicorn.socket": a}):
    gevent.sleep(0.01)
b.close()
gevent.sleep(0.1)
print("after", "nothing thrown")
"""


def test_watch_client_cases() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "close disconnected b''",
        "half-closed disconnected b''",
        "pipelined finished b'GET / HTTP/1.1\\r\\n'",
        "quiet finished None",
        "after nothing thrown",
    ]
