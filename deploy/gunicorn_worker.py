"""The gevent worker with slowloris bounds (issue 15, Medium 8).

About 8,000 idle, half-sent requests from one client took the gateway
offline: each held a greenlet (a slot of ``worker_connections``) for the
75 s keep-alive. This worker bounds both things an idle client can hold:

- **time**: gunicorn reads every request line and its headers inside
  ``timeout_ctx()``; here that is ``XROUTER_HEADER_TIMEOUT`` seconds
  (default 10), idle keep-alive waits included. A connection that has not
  sent complete headers by then is closed. Bodies are bounded separately
  (``XROUTER_MAX_BODY_BYTES``) and streams by the request deadline.
- **count**: one client address may hold at most
  ``XROUTER_MAX_CONNECTIONS_PER_IP`` connections per worker (default 256;
  0 turns it off); more are closed at accept. Addresses in
  ``XROUTER_TRUSTED_PROXIES`` are exempt (behind a proxy every connection
  comes from it: the proxy limits clients, see deploy/nginx/xrouter.conf).

``deploy/gunicorn.conf.py`` selects it through
``deploy.gunicorn_lazy_worker.LazyGeventWorker``, which keeps gevent out of
the arbiter and turns into this class in each forked worker. It reads the
environment itself: it runs before Django is set up.
"""

from __future__ import annotations

import ipaddress
import os
from collections import Counter
from typing import Any

import gevent
import gevent.socket
from gunicorn.workers.ggevent import GeventWorker

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(raw: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in raw.split(",") if p.strip())


class _ClientSocket(gevent.socket.socket):
    """A client socket whose ``sendall`` costs one system call, not two.

    gevent's ``sendall`` asks the kernel for ``SO_SNDBUF`` (a getsockopt)
    on every call to size its chunks; gunicorn makes one ``sendall`` per
    chunk of a response, so a relayed stream paid it per event: 10 % of a
    worker's CPU under 1,000 streams (issue 19, bench/profiles/). ``send``
    waits for the socket like gevent's does, timeouts included.
    """

    __slots__ = ()

    def sendall(self, data: Any, flags: int = 0) -> None:
        sent = self.send(data, flags)
        if sent == len(data):
            return
        view = memoryview(data)[sent:]
        while view:
            view = view[self.send(view, flags) :]


class XRouterGeventWorker(GeventWorker):
    """gunicorn's gevent worker with a header deadline and a per-address cap."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.configure()

    def configure(self) -> None:
        """Read the bounds (also called by deploy.gunicorn_lazy_worker)."""
        self.header_timeout = float(os.environ.get("XROUTER_HEADER_TIMEOUT", "10"))
        self.max_per_ip = int(os.environ.get("XROUTER_MAX_CONNECTIONS_PER_IP", "256"))
        self.exempt = _networks(os.environ.get("XROUTER_TRUSTED_PROXIES", ""))
        self.per_ip: Counter[str] = Counter()

    def timeout_ctx(self) -> gevent.Timeout:
        # gunicorn wraps "wait for and parse the next request line and
        # headers" in this; on expiry the connection is closed quietly.
        return gevent.Timeout(min(self.header_timeout, float(self.cfg.keepalive)), False)

    def _limited(self, ip: str) -> bool:
        if not self.max_per_ip or not ip:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return not any(address in network for network in self.exempt)

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        if type(client) is gevent.socket.socket:
            client.__class__ = _ClientSocket
        ip = addr[0] if isinstance(addr, tuple) and addr else ""
        if not self._limited(ip):
            super().handle(listener, client, addr)
            return
        if self.per_ip[ip] >= self.max_per_ip:
            self.log.warning("connection refused: %s holds %d connections", ip, self.max_per_ip)
            client.close()
            return
        self.per_ip[ip] += 1
        try:
            super().handle(listener, client, addr)
        finally:
            self.per_ip[ip] -= 1
            if not self.per_ip[ip]:
                del self.per_ip[ip]
