"""The outbound policy applied to requests' connections (providers.outbound).

Split from :mod:`providers.outbound` so that importing the policy (the
catalog's models validate ``base_url`` with it) does not import requests and
urllib3: a gunicorn worker on the default wire client never needs them, and
they cost ~6 MB of RSS per worker (issue 19, bench/profiles/memory-imports.txt).
:class:`providers.http.HttpClient` imports this module when it first builds
its requests session.
"""

from __future__ import annotations

import socket
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from providers.outbound import current_policy


def _checked_socket(conn: HTTPConnection) -> socket.socket:
    """Open ``conn``'s socket to an address the policy allows (urllib3's _new_conn)."""
    host = conn._dns_host  # the name being connected to (host keeps it for TLS)
    try:
        infos = current_policy().resolve(host, conn.port or 0)
    except socket.gaierror as exc:
        raise NameResolutionError(conn.host, conn, exc) from exc
    last: OSError | None = None
    for family, socktype, proto, _canon, address in infos:
        sock = socket.socket(family, socktype, proto)
        try:
            for option in conn.socket_options or ():
                sock.setsockopt(*option)
            if isinstance(conn.timeout, int | float):  # else urllib3's "default" sentinel
                sock.settimeout(conn.timeout)
            if conn.source_address:
                sock.bind(conn.source_address)
            sock.connect(address)
            return sock
        except TimeoutError as exc:
            sock.close()
            raise ConnectTimeoutError(
                conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})"
            ) from exc
        except OSError as exc:
            sock.close()
            last = exc
    raise NewConnectionError(conn, f"Failed to establish a new connection: {last}")


class _CheckedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _checked_socket(self)


class _CheckedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _checked_socket(self)


class _CheckedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection


class _CheckedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection


class PolicyHTTPAdapter(HTTPAdapter):
    """A requests adapter whose new connections obey :func:`current_policy`."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {  # type: ignore[assignment]
            "http": _CheckedHTTPPool,
            "https": _CheckedHTTPSPool,
        }
