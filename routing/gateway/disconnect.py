"""Notice a client that hangs up while its request waits for the upstream.

Under gunicorn's gevent worker a disconnect is normally seen only when the
next write to the client fails. Before the first upstream byte nothing is
written, so a client that gave up would keep an upstream call (and its
concurrency slot) busy until the upstream answered: 40 s in the review.

:func:`watch_client` watches the client's socket while the upstream call
runs. A request has been read whole by then, so the socket turning readable
means either the client closed it (``recv`` peeks ``b""``) or it sent
something else (a pipelined request: the watch simply stops). On a close,
:class:`ClientDisconnected` is raised in the waiting greenlet, wherever it
blocks: urllib3 then closes the upstream connection (so the upstream sees
the hang-up at once) and the view records the request as 499.

``ClientDisconnected`` derives from ``BaseException`` so that the adapters'
and the router's ``except Exception`` handlers cannot take it for an
upstream failure and try the next deployment. Outside gevent (the
development server, tests in one process) the watch is a no-op.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger(__name__)


class ClientDisconnected(BaseException):  # noqa: N818 (a signal, like GreenletExit)
    """The client closed its connection before the answer started."""


def _gevent_ready() -> bool:
    try:
        from gevent import monkey
    except ImportError:
        return False
    return bool(monkey.is_module_patched("socket"))


@contextlib.contextmanager
def watch_client(environ: dict[str, Any]) -> Iterator[None]:
    """Raise :class:`ClientDisconnected` here if the client hangs up meanwhile."""
    sock = environ.get("gunicorn.socket")
    if sock is None or not _gevent_ready():
        yield
        return
    import gevent

    # A bare read watcher on the hub's loop, not a watching greenlet: almost
    # every call ends before the socket turns readable, and then the watch
    # costs one watcher started and stopped instead of a greenlet spawned,
    # switched into and killed (issue 19: 3.3 % of a non-stream request's
    # CPU; bench/profiles/features-watch-client.txt). Only a readable socket
    # (a hang-up or a pipelined request) gets a greenlet, to peek at it.
    hub = gevent.get_hub()
    target = gevent.getcurrent()
    state = {"active": True}
    watcher = hub.loop.io(sock.fileno(), 1)

    def interrupt() -> None:
        # Runs in the hub; the target is blocked (it is not running, or the
        # hub would not be), so throwing switches into it at its wait.
        if state["active"]:
            state["active"] = False
            target.throw(ClientDisconnected())

    def peek() -> None:
        try:
            if sock.recv(1, socket.MSG_PEEK) != b"":
                return  # the client sent more: not a hang-up
        except OSError:
            pass  # reset by peer: gone as well
        if state["active"]:
            hub.loop.run_callback(interrupt)

    peeking: list[Any] = []

    def readable() -> None:
        # In the hub: stop the (level-triggered) watcher, look in a greenlet.
        watcher.stop()
        if state["active"]:
            peeking.append(gevent.spawn(peek))

    watcher.start(readable)
    try:
        yield
    finally:
        state["active"] = False
        watcher.stop()
        watcher.close()
        for greenlet in peeking:
            # As the watching greenlet was before: never left reading the
            # socket the next request on this connection will read.
            greenlet.kill(block=False)
