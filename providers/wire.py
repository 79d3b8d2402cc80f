"""The upstream HTTP/1.1 client of the hot path (issue 19).

A pool of keep-alive sockets per (scheme, host, port) and geventhttpclient's
C parser (llhttp) for the response: no requests/urllib3/http.client layers
between a socket read and the bytes an adapter sees. The sockets are the
standard library's, which gevent's monkey-patching makes cooperative in the
gunicorn workers (and which stay plain blocking sockets in tests and
management commands), so no gevent primitive is shared between threads.

What requests gave the adapters is kept here: connect and read timeouts
(the read timeout bounds each socket read), TLS verification against
certifi's CAs or the provider's ``ca_bundle``, gzip/deflate decoding, and
the outbound policy: every new connection goes only to an address
:func:`providers.outbound.current_policy` allows, checked after DNS, and
the socket is opened to that checked address. Errors come out as the
exceptions listed in :data:`TRANSPORT_ERRORS`; :mod:`providers.http` turns
them into :class:`~providers.errors.ProviderError`.

Usage (through :class:`providers.http.HttpClient`, which owns one)::

    client = WireClient(max_idle=256, verify=True)
    response = client.request("POST", url, body, headers, timeout=(5.0, 120.0))
    response.status_code, response.headers.get("content-type"), response.content
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import zlib
from collections import deque
from typing import Any
from urllib.parse import quote, urlsplit

import certifi
from geventhttpclient.response import HTTPParseError, HTTPResponse

from providers.outbound import current_policy

#: Bytes asked of the socket per read: one SSE event or a whole small JSON
#: body in one system call.
READ_SIZE = 65536
_DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_ILLEGAL_IN_HEADER = ("\r", "\n", "\0")


class BodyCut(OSError):
    """The connection closed before the response was complete.

    ``after_head``: the status and headers had arrived (the body broke off),
    else nothing usable came back at all.
    """

    def __init__(self, message: str, *, after_head: bool) -> None:
        super().__init__(message)
        self.after_head = after_head


class BadHeader(ValueError):
    """A request header name or value that would break the request framing."""


#: What :meth:`WireClient.request` and reading a :class:`WireResponse` raise.
TRANSPORT_ERRORS = (OSError, HTTPParseError, zlib.error, BadHeader)


class ResponseHeaders(dict[str, str]):
    """Response headers by lower-cased name; repeated fields joined by ", "."""

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


class _Pool:
    """Idle keep-alive sockets to one origin; at most ``max_idle`` kept."""

    def __init__(self, scheme: str, host: str, port: int, max_idle: int, tls: Any) -> None:
        self.scheme, self.host, self.port = scheme, host, port
        self.max_idle = max_idle
        self.tls = tls
        self.idle: deque[socket.socket] = deque()
        self.lock = threading.Lock()

    def get(self, connect_timeout: float) -> socket.socket:
        """Return an idle socket that is still open, else a new one."""
        while True:
            with self.lock:
                sock = self.idle.pop() if self.idle else None
            if sock is None:
                return self._connect(connect_timeout)
            if _still_open(sock):
                return sock
            sock.close()

    def put(self, sock: socket.socket) -> None:
        with self.lock:
            if len(self.idle) < self.max_idle:
                self.idle.append(sock)
                return
        sock.close()

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, deque()
        for sock in idle:
            sock.close()

    def _connect(self, timeout: float) -> socket.socket:
        # Resolve through the policy: one denied address refuses the host
        # (OutboundRefused, an OSError), and the socket connects to the
        # address that was checked, never to a second lookup's answer.
        infos = current_policy().resolve(self.host, self.port)
        last: OSError | None = None
        for family, socktype, proto, _canon, address in infos:
            sock = socket.socket(family, socktype, proto)
            try:
                sock.settimeout(timeout)
                sock.connect(address)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.tls is not None:
                    sock = self.tls.wrap_socket(sock, server_hostname=self.host)
                return sock
            except TimeoutError:
                sock.close()
                raise
            except OSError as exc:
                sock.close()
                last = exc
        raise last or OSError(f"no address for {self.host}")


def _still_open(sock: socket.socket) -> bool:
    """An idle keep-alive socket is not readable: readable means the peer
    closed it (or sent something unasked), so it must not be reused."""
    try:
        if sock.fileno() < 0:
            return False
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


class WireClient:
    """Keep-alive HTTP/1.1 to any number of origins; thread- and greenlet-safe."""

    def __init__(self, *, max_idle: int = 256, verify: bool | str = True) -> None:
        self.max_idle = max_idle
        self.verify = verify
        self._tls: ssl.SSLContext | None = None
        self._pools: dict[tuple[str, str, int], _Pool] = {}
        self._lock = threading.Lock()

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            # Verification is never off (HttpClient refuses verify=False):
            # certifi's CAs like requests, or the provider's own bundle.
            cafile = self.verify if isinstance(self.verify, str) else certifi.where()
            self._tls = ssl.create_default_context(cafile=cafile)
        return self._tls

    def _pool(self, scheme: str, host: str, port: int) -> _Pool:
        key = (scheme, host, port)
        pool = self._pools.get(key)
        if pool is None:
            with self._lock:
                pool = self._pools.get(key)
                if pool is None:
                    tls = self._tls_context() if scheme == "https" else None
                    pool = self._pools[key] = _Pool(scheme, host, port, self.max_idle, tls)
        return pool

    def request(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
        *,
        timeout: tuple[float, float],
        stream: bool = False,
    ) -> WireResponse:
        """Send one request and return the response once its headers are in.

        Without ``stream`` the whole body is read (and the socket pooled
        again) before returning; with it, :meth:`WireResponse.read1` reads
        as data arrives and :meth:`WireResponse.close` must be called.
        """
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise BadHeader(f"unsupported upstream URL {url!r}")
        host = parts.hostname
        port = parts.port or (443 if scheme == "https" else 80)
        target = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
        if parts.query:
            target += "?" + parts.query
        head = _request_head(method, target, host, port, scheme, body, headers)
        pool = self._pool(scheme, host, port)
        connect_timeout, read_timeout = timeout
        # No transparent retry, not even on a reused socket the peer had
        # just closed: the request may have been processed, and the router
        # is the one retry layer (it sees a retryable ProviderError).
        sock = pool.get(connect_timeout)
        try:
            sock.settimeout(read_timeout)
            _send(sock, head + body if body else head)
            response = WireResponse(sock, pool, method)
            response.read_head()
        except BaseException:
            sock.close()
            raise
        if not stream:
            response.read_all()
        else:
            response.stream_reads()
        return response

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()


def _send(sock: socket.socket, data: bytes) -> None:
    """``sendall`` without gevent's per-call getsockopt (see deploy/gunicorn_worker.py)."""
    view = memoryview(data)
    while view:
        view = view[sock.send(view) :]


def _request_head(
    method: str,
    target: str,
    host: str,
    port: int,
    scheme: str,
    body: bytes | None,
    headers: dict[str, str],
) -> bytes:
    shown_host = f"[{host}]" if ":" in host else host
    if port != (443 if scheme == "https" else 80):
        shown_host += f":{port}"
    lines = [f"{method} {target} HTTP/1.1", f"Host: {shown_host}"]
    given = {name.lower() for name in headers}
    if "user-agent" not in given:
        lines.append("User-Agent: xrouter")
    if "accept-encoding" not in given:
        lines.append("Accept-Encoding: gzip, deflate")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body or b'')}")
    for name, value in headers.items():
        text = f"{name}{value}"
        if any(c in text for c in _ILLEGAL_IN_HEADER) or ":" in name or not name:
            raise BadHeader(f"header {name!r} has a character that is not allowed")
        lines.append(f"{name}: {value}")
    # Header values are latin-1 on the wire, like http.client sends them.
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class WireResponse(HTTPResponse):
    """One response: status and headers parsed, the body read on demand.

    ``read1`` returns the next decoded bytes as soon as any arrive (b"" at
    the end); ``content`` the whole decoded body. A response read to its
    end gives its socket back to the pool unless either side said close;
    ``close()`` before the end closes the socket.
    """

    def __init__(self, sock: socket.socket, pool: _Pool, method: str) -> None:
        super().__init__(method=method)
        self._sock: socket.socket | None = sock
        self._pool = pool
        self._decoder: Any = None
        self._content: bytes | None = None
        self.headers_map = ResponseHeaders()
        # Set by stream_reads(): the body is read waiting first (below).
        self._waits_first = False
        self._timer: Any = None

    def stream_reads(self) -> None:
        """Read the rest of a streamed body waiting for data before each read.

        gevent's ``recv`` tries the read first and waits on EAGAIN: a stream
        whose next event is not there yet (every event of a quiet stream)
        costs a failed system call, a raised and caught exception and a new
        Timeout per event. Waiting on the socket's read watcher first, under
        one Timeout reused for every wait, cost 23-25 us per event instead of
        33-39 us in a gevent microbenchmark of 300 quiet sockets on the
        loaded box (issue 19, bench/profiles/stream-relay.txt). Only for a plain
        gevent socket (the gunicorn workers): TLS and blocking sockets read
        as before.
        """
        sock = self._sock
        try:
            import gevent.socket
        except ImportError:  # pragma: no cover (gevent ships with gunicorn's worker)
            return
        if type(sock) is gevent.socket.socket:
            self._waits_first = True

    def _wait_recv(self, sock: Any) -> bytes:
        """``recv`` on a gevent socket, waiting for it to be readable first."""
        timer = self._timer
        if timer is None and sock.timeout is not None:
            import gevent

            # The socket's read timeout bounds each wait, as gevent's does.
            timer = self._timer = gevent.Timeout(sock.timeout, TimeoutError("timed out"))
        while True:
            if timer is not None:
                timer.start()
            try:
                sock.hub.wait(sock._read_event)
            finally:
                if timer is not None:
                    timer.cancel()
            try:
                data: bytes = sock._sock.recv(READ_SIZE)
            except BlockingIOError:
                continue  # woken without data (it happens): wait again
            return data

    # HTTPResponse.headers is an items() property; adapters want a mapping.
    @property  # type: ignore[override]
    def headers(self) -> ResponseHeaders:
        return self.headers_map

    def _recv(self) -> None:
        sock = self._sock
        if sock is None:
            raise BodyCut("the response was closed", after_head=self.headers_complete)
        try:
            if self._waits_first:
                data = self._wait_recv(sock)
            else:
                data = sock.recv(READ_SIZE)
        except TimeoutError:
            raise
        except OSError as exc:
            # A reset after the headers is a body that broke off (what
            # requests called ChunkedEncodingError), not an unreachable host.
            self._drop()
            if not self.headers_complete:
                raise
            raise BodyCut(f"connection lost in the body: {exc}", after_head=True) from exc
        if not data:
            self._drop()
            if not self.headers_complete:
                raise BodyCut("connection closed before the response headers", after_head=False)
            # A body delimited by the connection's end completes here.
            self.feed(b"")
            if not self.message_complete:
                raise BodyCut("connection closed before the end of the body", after_head=True)
            return
        self.feed(data)

    def read_head(self) -> None:
        while not self.headers_complete or self.get_code() < 200:
            self._recv()
        headers = self.headers_map
        for name, value in self._headers_index.itermerged():
            headers[name.lower()] = value
        encoding = headers.get("content-encoding", "").strip().lower()
        if encoding in _DECODERS:
            self._decoder = zlib.decompressobj(_DECODERS[encoding])
        if self.message_complete:
            self._finish()

    def _take(self) -> bytes:
        data = bytes(self._body_buffer)
        del self._body_buffer[:]
        if self._decoder is not None and data:
            data = self._decoder.decompress(data)
        return data

    def read1(self, size: int = READ_SIZE) -> bytes:
        """Return the next body bytes (decoded), waiting only if none are buffered."""
        while True:
            if self._body_buffer:
                data = self._take()
                if data:
                    return data
                continue
            if self.message_complete or self._sock is None and self.headers_complete:
                if self._decoder is not None:
                    tail, self._decoder = self._decoder.flush(), None
                    if tail:
                        return tail
                return b""
            self._recv()
            if self.message_complete:
                self._finish()

    def read_all(self) -> bytes:
        chunks = []
        while True:
            data = self.read1()
            if not data:
                break
            chunks.append(data)
        self._content = b"".join(chunks)
        return self._content

    @property
    def content(self) -> bytes:
        if self._content is None:
            self.read_all()
        assert self._content is not None
        return self._content

    def _finish(self) -> None:
        """The message is complete: pool the socket if both sides keep it."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self.should_keep_alive() and not self.parser_failed():
            self._pool.put(sock)
        else:
            sock.close()

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def close(self) -> None:
        """Give up on the rest of the body (the socket is not reused)."""
        if self._sock is not None:
            self._drop()
