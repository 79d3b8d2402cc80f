"""Reading streamed bodies: the wire client (providers.wire), requests' fast
path and urllib3's path give the same events, and a body cut mid-chunk is a
retryable stream cut on each.

A real HTTP server on loopback writes the raw bytes, so chunked framing,
gzip and an early close are what the client's socket actually sees.
"""

from __future__ import annotations

import gzip
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from providers.errors import ProviderError
from providers.http import HttpClient, _body_reader, iter_sse_json
from providers.wire import WireResponse

EVENTS = [
    b'data: {"n": 1, "text": "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82"}\n\n',
    b": keep-alive comment\n\n",
    b'data: {"n": 2}\n\n',
    b"data: [DONE]\n\n",
]


def _chunked(parts: list[bytes]) -> bytes:
    return b"".join(b"%X\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


def _response(body: bytes, *, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        b"Transfer-Encoding: chunked\r\n" + extra + b"\r\n" + body
    )


def _split_mid_character(parts: list[bytes]) -> list[bytes]:
    # Cut the first event inside its first Cyrillic letter: the reader must
    # join the bytes before anything decodes them.
    first = parts[0]
    cut = first.index(b"\xd0") + 1
    return [first[:cut], first[cut:], *parts[1:]]


RESPONSES = {
    "/plain": _response(_chunked(_split_mid_character(EVENTS))),
    "/gzip": _response(
        _chunked([gzip.compress(b"".join(EVENTS))]), extra=b"Content-Encoding: gzip\r\n"
    ),
    # The connection closes inside the second chunk.
    "/cut": _response(b"%X\r\n%s\r\n" % (len(EVENTS[0]), EVENTS[0]) + b"40\r\ndata: {"),
}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    data = conn.recv(4096)
                    if not data:
                        break
                    request += data
                path = request.split(b" ", 2)[1].decode() if request else ""
                conn.sendall(RESPONSES.get(path, b"HTTP/1.1 404 Not Found\r\n\r\n"))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.close()


@pytest.fixture(params=["wire", "requests"])
def client_kind(request: pytest.FixtureRequest, settings: Any) -> str:
    settings.XROUTER_UPSTREAM_CLIENT = request.param
    return str(request.param)


def _events(url: str) -> tuple[list[dict[str, object]], str]:
    client = HttpClient(provider="test", read_timeout=5)
    response = client.request("GET", url, stream=True)
    reader = _body_reader(response)
    if isinstance(response, WireResponse):
        kind = "wire"
    elif getattr(reader, "__self__", None) is response.raw._fp:
        kind = "http.client"
    else:
        kind = "urllib3"
    return list(iter_sse_json(response, provider="test")), kind


def test_identity_body_takes_the_fast_path_and_keeps_every_event(
    server: str, client_kind: str
) -> None:
    events, kind = _events(server + "/plain")
    assert kind == ("wire" if client_kind == "wire" else "http.client")
    assert events == [{"n": 1, "text": "Привет"}, {"n": 2}]


def test_gzip_body_is_decoded(server: str, client_kind: str) -> None:
    events, kind = _events(server + "/gzip")
    assert kind == ("wire" if client_kind == "wire" else "urllib3")
    assert events == [{"n": 1, "text": "Привет"}, {"n": 2}]


def test_body_cut_inside_a_chunk_is_a_retryable_stream_cut(server: str, client_kind: str) -> None:
    client = HttpClient(provider="test", read_timeout=5)
    response = client.request("GET", server + "/cut", stream=True)
    received = []
    with pytest.raises(ProviderError) as caught:
        for event in iter_sse_json(response, provider="test"):
            received.append(event)
    assert received == [{"n": 1, "text": "Привет"}]
    assert caught.value.retryable is True
    assert caught.value.code == "upstream_stream_cut"
