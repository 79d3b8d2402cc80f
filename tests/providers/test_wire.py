"""The wire client (providers.wire) behind HttpClient: keep-alive, timeouts,
TLS verification, the outbound policy, gzip and header framing.

A real server on loopback answers with raw bytes, so what is tested is what
the client's socket sees.
"""

from __future__ import annotations

import datetime
import gzip
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from providers.errors import ProviderError
from providers.http import HttpClient
from providers.wire import WireResponse

BODY = b'{"ok": true}'


class Server:
    """Answers every request on a connection until the client closes it."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.tls = tls
        self.connections = 0
        self.requests: list[bytes] = []
        self.reply = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
        self.hang = False  # True: never answer (a hung upstream) until released
        self.released = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + buffer[:length])
                buffer = buffer[length:]
                if self.hang:
                    self.released.wait(30)
                    return
                conn.sendall(self.reply)
                if b"Connection: close" in self.reply:
                    return
        except (OSError, ssl.SSLError):
            return
        finally:
            conn.close()

    @property
    def url(self) -> str:
        # TLS needs a name the certificate holds.
        return f"https://localhost:{self.port}" if self.tls else f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.released.set()
    running.close()


def test_calls_reuse_one_keep_alive_connection(server: Server) -> None:
    client = HttpClient(provider="wire-test")
    for _ in range(3):
        response = client.post_json(server.url + "/v1/chat", {"n": 1})
        assert isinstance(response, WireResponse)
        assert response.status_code == 200
        assert response.content == BODY
    assert server.connections == 1
    assert len(server.requests) == 3
    assert server.requests[0].startswith(b"POST /v1/chat HTTP/1.1\r\n")
    assert server.requests[0].endswith(b'\r\n\r\n{"n":1}')
    assert b"\r\nContent-Type: application/json\r\n" in server.requests[0]
    client.close()


def test_connection_close_is_honoured(server: Server) -> None:
    server.reply = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    client = HttpClient(provider="wire-test")
    assert client.get(server.url + "/a").content == b"ok"
    assert client.get(server.url + "/b").content == b"ok"
    assert server.connections == 2


def test_gzip_body_is_decoded_and_headers_are_case_insensitive(server: Server) -> None:
    packed = gzip.compress(BODY)
    server.reply = (
        b"HTTP/1.1 429 Too Many Requests\r\nContent-Encoding: gzip\r\nRetry-After: 7\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(packed), packed)
    )
    response = HttpClient(provider="wire-test").get(server.url + "/")
    assert response.status_code == 429
    assert response.content == BODY
    assert response.headers.get("retry-after") == "7"
    assert response.headers.get("Retry-After") == "7"


def test_a_silent_upstream_is_a_retryable_timeout(server: Server) -> None:
    server.hang = True
    client = HttpClient(provider="wire-test", read_timeout=0.2)
    with pytest.raises(ProviderError) as caught:
        client.get(server.url + "/")
    assert caught.value.code == "upstream_timeout"
    assert caught.value.status == 504
    assert caught.value.retryable is True
    server.released.set()


def test_a_closed_port_is_unreachable() -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(ProviderError) as caught:
        HttpClient(provider="wire-test").get(f"http://127.0.0.1:{port}/")
    assert caught.value.code == "upstream_unreachable"
    assert caught.value.retryable is True


def test_the_outbound_policy_holds_before_any_byte_leaves(server: Server, settings: Any) -> None:
    settings.XROUTER_OUTBOUND_ALLOW_LOOPBACK = False
    client = HttpClient(provider="wire-test")
    assert client.wire is not None
    with pytest.raises(ProviderError) as caught:
        client.post_json(server.url + "/v1/chat", {"secret": "credential"})
    assert caught.value.code == "upstream_address_refused"
    assert server.connections == 0


def test_a_name_resolving_to_metadata_is_refused(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = socket.getaddrinfo

    def resolve(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "upstream.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(ProviderError) as caught:
        HttpClient(provider="wire-test").get(f"http://upstream.test:{server.port}/")
    assert caught.value.code == "upstream_address_refused"


def test_a_header_that_would_split_the_request_is_refused(server: Server) -> None:
    with pytest.raises(ProviderError) as caught:
        HttpClient(provider="wire-test").get(
            server.url + "/", headers={"X-Folder": "a\r\nX-Injected: 1"}
        )
    assert caught.value.retryable is False
    assert server.requests == []


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_is_verified_against_certifi_or_the_ca_bundle(tmp_path: Path) -> None:
    cert_path, key_path = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    tls_server = Server(tls=context)
    try:
        with pytest.raises(ProviderError) as caught:
            HttpClient(provider="wire-test").get(tls_server.url + "/")
        assert caught.value.code == "upstream_unreachable"
        assert tls_server.requests == []
        trusted = HttpClient(provider="wire-test", verify=str(cert_path))
        response = trusted.get(tls_server.url + "/")
        assert response.status_code == 200
        assert response.content == BODY
    finally:
        tls_server.close()


def _gevent_stream(timeout: float) -> tuple[Any, WireResponse]:
    """A streamed response on a gevent socket pair (what the gunicorn workers hold)."""
    import gevent.socket

    from providers.wire import _Pool

    upstream, ours = gevent.socket.socketpair()
    ours.settimeout(timeout)
    upstream.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
    response = WireResponse(ours, _Pool("http", "upstream", 80, 0, None), "POST")
    response.read_head()
    response.stream_reads()
    return upstream, response


def test_a_stream_on_a_gevent_socket_waits_before_it_reads() -> None:
    upstream, response = _gevent_stream(5)
    assert response._waits_first
    try:
        # Data already there is read at once; the next read waits for it.
        upstream.sendall(b"data: 1\n\n")
        assert response.read1() == b"data: 1\n\n"
        upstream.sendall(b"data: 2\n\n")
        assert response.read1() == b"data: 2\n\n"
        upstream.close()
        # The end of a body delimited by the connection's close.
        assert response.read1() == b""
    finally:
        upstream.close()


def test_a_silent_stream_on_a_gevent_socket_times_out_each_wait() -> None:
    upstream, response = _gevent_stream(0.05)
    try:
        upstream.sendall(b"data: 1\n\n")
        assert response.read1() == b"data: 1\n\n"
        # The one Timeout is reused: a second silence times out as well.
        with pytest.raises(TimeoutError):
            response.read1()
    finally:
        upstream.close()


def test_a_blocking_socket_reads_as_before() -> None:
    upstream, ours = socket.socketpair()
    try:
        from providers.wire import _Pool

        upstream.sendall(b"HTTP/1.1 200 OK\r\n\r\ndata: x\n\n")
        response = WireResponse(ours, _Pool("http", "upstream", 80, 0, None), "POST")
        response.read_head()
        response.stream_reads()
        assert not response._waits_first
        assert response.read1() == b"data: x\n\n"
    finally:
        upstream.close()
        ours.close()
