"""What a hostile or broken upstream sends never reaches the client raw.

One sanitiser (ProviderError's) masks credentials in upstream error text,
plain and mid-stream; a malformed stream event ends the stream with a
terminal error event instead of a dropped connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import requests

from tests.conftest import LiveGateway, openai_catalog
from tests.hostile_upstream import HostileUpstream, Reply, hostile_upstream

LEAKS = (
    "sk-proj-0123456789abcdefghijklmnop",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJnYXRld2F5In0.c2lnbmF0dXJlLXNlY3JldA",
    "xr_live_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
)
LEAKY_MESSAGE = (
    f"Incorrect API key provided: {LEAKS[0]}. Session {LEAKS[1]}, caller key {LEAKS[2]}."
)
CHUNK = {
    "id": "chatcmpl-hostile",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "gpt-mock",
    "choices": [{"index": 0, "delta": {"content": "partial "}, "finish_reason": None}],
}


@pytest.fixture
def hostile(
    live_server: Any, transactional_db: None, load_catalog: Any, make_key: Any
) -> Iterator[tuple[HostileUpstream, LiveGateway]]:
    with hostile_upstream() as upstream:
        load_catalog(openai_catalog(upstream.base_url))
        yield upstream, LiveGateway(live_server.url, make_key().plaintext)


def _post(gateway: LiveGateway, **body: Any) -> requests.Response:
    payload = {"model": "local/mock", "messages": [{"role": "user", "content": "hi"}], **body}
    return requests.post(
        gateway.url + "/v1/chat/completions",
        data=orjson.dumps(payload),
        headers=gateway.headers,
        timeout=30,
    )


def _events(response: requests.Response) -> list[Any]:
    return [
        line[6:] if line == "data: [DONE]" else orjson.loads(line[6:])
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]


def test_upstream_error_text_is_sanitised_plain_and_mid_stream(
    hostile: tuple[HostileUpstream, LiveGateway],
) -> None:
    """The same credentials in a 400 body and in a stream error event are masked."""
    upstream, gateway = hostile
    upstream.reply = Reply(status=400, body={"error": {"message": LEAKY_MESSAGE}})
    plain = _post(gateway)
    assert plain.status_code == 400
    plain_message = plain.json()["error"]["message"]

    upstream.reply = Reply(
        stream=[
            b"data: " + orjson.dumps(CHUNK) + b"\n\n",
            b"data: " + orjson.dumps({"error": {"message": LEAKY_MESSAGE}}) + b"\n\n",
        ]
    )
    streamed = _post(gateway, stream=True)
    assert streamed.status_code == 200
    events = _events(streamed)
    assert events[0]["choices"][0]["delta"]["content"] == "partial "
    assert "[DONE]" not in events
    stream_message = events[-1]["error"]["message"]

    for message in (plain_message, stream_message):
        assert "Incorrect API key provided: [redacted]" in message, message
        for leak in LEAKS:
            assert leak not in message
    for leak in LEAKS:
        assert leak not in plain.text and leak not in streamed.text


@pytest.mark.parametrize(
    "frame",
    [
        b'data: {"id": "chatcmpl-hostile", "choices": [{"delta": \n\n',
        b'data: {"id": "chatcmpl-hostile", "choices": [{"delta": "not an object"}]}\n\n',
        b'data: {"id": "chatcmpl-hostile", "choices": 7}\n\n',
    ],
    ids=["broken-json", "delta-not-object", "choices-not-list"],
)
def test_malformed_stream_event_ends_with_a_terminal_error_event(
    hostile: tuple[HostileUpstream, LiveGateway], frame: bytes
) -> None:
    """A bad event after the first chunk: one error event, no [DONE], clean end."""
    upstream, gateway = hostile
    upstream.reply = Reply(
        stream=[
            b"data: " + orjson.dumps(CHUNK) + b"\n\n",
            frame,
            b"data: " + orjson.dumps(CHUNK) + b"\n\n",
        ]
    )
    response = _post(gateway, stream=True)
    assert response.status_code == 200
    events = _events(response)
    assert len(events) == 2, events
    assert events[0]["choices"][0]["delta"]["content"] == "partial "
    error = events[1]["error"]
    assert error["type"] == "api_error"
    assert error["code"] == "upstream_bad_response"
    assert error["message"].startswith("local sent a stream event"), error["message"]
