"""The relay writes each upstream read's events at once, and never waits for
more (issue 19: coalesced writes to the client).

A burst of events that upstream sent in one write reaches the client whole,
in order, in one piece of the response, with usage exact; a quiet stream's
event goes out before upstream has even sent the next. Both are asserted on
order and content, never on time.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from django.test import Client

from providers.base import ChatChunk, ChatStream, ProviderConfig, Usage
from providers.errors import ProviderError
from providers.http import iter_sse_batches, iter_sse_data
from providers.openai_compat import OpenAICompatibleProvider
from providers.wire import WireResponse, _Pool
from routing.gateway.context import CallContext
from routing.gateway.relay import SSE_DONE, ChatEncoder, relay
from tests.conftest import openai_catalog
from tests.hostile_upstream import Reply, hostile_upstream


def _event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    payload = {
        "id": "chatcmpl-up",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-mock",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        **extra,
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


BURST = ["один ", "два ", "три ", "четыре"]


def test_a_burst_in_one_upstream_write_reaches_the_client_in_one_piece(
    db: None, load_catalog: Any, make_key: Any
) -> None:
    # The role chunk and four content chunks leave upstream in one write
    # (one send on loopback, so one read at the gateway); the rest follow.
    burst = _event({"role": "assistant", "content": ""}) + b"".join(
        _event({"content": text}) for text in BURST
    )
    frames = [
        burst,
        _event({}, "stop"),
        _event({}, choices=[], usage={"prompt_tokens": 9, "completion_tokens": 4}),
        b"data: [DONE]\n\n",
    ]
    with hostile_upstream() as upstream:
        upstream.reply = Reply(stream=frames)
        load_catalog(openai_catalog(upstream.base_url))
        response = Client().post(
            "/v1/chat/completions",
            data=orjson.dumps(
                {
                    "model": "local/mock",
                    "stream": True,
                    "stream_options": {"include_usage": True},
                    "messages": [{"role": "user", "content": "hi"}],
                }
            ),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {make_key().plaintext}",
        )
        assert response.status_code == 200
        pieces = list(response.streaming_content)
    # Every piece is whole events.
    assert all(piece.startswith(b"data: ") and piece.endswith(b"\n\n") for piece in pieces)
    events = [event for piece in pieces for event in piece.split(b"\n\n") if event]
    assert events[-1] == SSE_DONE.strip()
    decoded = [orjson.loads(event[6:]) for event in events[:-1]]
    texts = [c["delta"].get("content") for e in decoded for c in e["choices"]]
    assert texts == ["", *BURST, None]
    # The role chunk is the call's first chunk (read before the answer
    # started); the four content chunks after it came in one read, so they
    # went out as one piece, the pass-through ones as upstream's bytes.
    assert pieces[0].count(b"\n\n") == 1
    second = pieces[1].split(b"\n\n")
    assert [orjson.loads(e[6:])["choices"][0]["delta"]["content"] for e in second[:4]] == BURST
    assert all(b'"logprobs":null,"finish_reason":null}]}' in e for e in second[1:4])
    assert [c["finish_reason"] for e in decoded for c in e["choices"]][-1] == "stop"
    usage = decoded[-1]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (9, 4, 13)


def _wire_pair() -> tuple[socket.socket, WireResponse]:
    """A streamed response read from one end of a socket pair; the test writes the other."""
    upstream, ours = socket.socketpair()
    ours.settimeout(5)
    upstream.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
    response = WireResponse(ours, _Pool("http", "upstream", 80, 0, None), "POST")
    response.read_head()
    return upstream, response


def test_a_quiet_streams_event_is_given_out_before_the_next_is_sent() -> None:
    upstream, response = _wire_pair()
    batches = iter_sse_batches(response, provider="test")
    try:
        upstream.sendall(b'data: {"n": 1}\n\ndata: {"n": 2}\n\ndata: {"n"')
        # Two complete events and the start of a third: the two come now.
        assert next(batches) == [b'{"n": 1}', b'{"n": 2}']
        upstream.sendall(b": 3}\n\n")
        # Upstream has sent nothing after this event: it is not held back
        # waiting for one (a hold would time the read out: an error here).
        assert next(batches) == [b'{"n": 3}']
        upstream.sendall(b"data: [DONE]")
        upstream.close()
        # A last event without its blank line still counts.
        assert list(batches) == [[b"[DONE]"]]
    finally:
        upstream.close()
        batches.close()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # CRLF line ends: read line by line from the first \r on.
        (b'data: {"a": 1}\r\n\r\ndata: {"b": 2}\r\n\r\n', [b'{"a": 1}', b'{"b": 2}']),
        # Multi-line data, "data:" without its space, other fields, comments.
        (
            b"event: x\nid: 7\ndata: one\ndata:two\n\n: ping\n\n\n\ndata: three\n\n",
            [b"one\ntwo", b"three"],
        ),
        (b"data: late\r\n\r\ndata: tail", [b"late", b"tail"]),
    ],
)
def test_events_are_parsed_like_the_line_reader(body: bytes, expected: list[bytes]) -> None:
    upstream, response = _wire_pair()
    try:
        # Split the body mid-way: a read boundary inside an event.
        upstream.sendall(body[:9])
        upstream.sendall(body[9:])
        upstream.close()
        assert list(iter_sse_data(response, provider="test")) == expected
    finally:
        upstream.close()


def test_an_event_that_never_ends_is_refused() -> None:
    upstream, response = _wire_pair()
    try:
        upstream.sendall(b"data: " + b"x" * 300)
        upstream.close()
        with pytest.raises(ProviderError, match="oversized") as caught:
            list(iter_sse_batches(response, provider="test", max_event=256))
        assert caught.value.retryable is False
    finally:
        upstream.close()


def _ctx() -> CallContext:
    return CallContext(request_id="r", method="POST", path="/v1/chat/completions", model="m")


def test_the_relay_writes_a_read_as_it_comes_without_asking_for_the_next(db: None) -> None:
    asked: list[int] = []

    def reads() -> Iterator[list[ChatChunk]]:
        asked.append(1)
        yield [ChatChunk(content="a"), ChatChunk(content="b")]
        asked.append(2)
        yield [ChatChunk(content="c"), ChatChunk(usage=Usage(prompt_tokens=2, completion_tokens=3))]
        asked.append(3)

    stream = ChatStream(iter(()), id="up", model="m", created=1)
    stream.set_batches(reads())
    ctx = _ctx()
    pieces = relay(stream, ChatChunk(role="assistant"), ctx, ChatEncoder(stream, ctx, True))
    first = next(pieces)
    assert asked == [] and first.count(b"\n\n") == 1
    both = next(pieces)
    # One piece for the two chunks of one read; the next read not asked yet.
    assert asked == [1]
    texts = [orjson.loads(e[6:])["choices"][0]["delta"]["content"] for e in both.split(b"\n\n")[:2]]
    assert texts == ["a", "b"]
    rest = b"".join(pieces)
    assert asked == [1, 2, 3]
    assert rest.endswith(SSE_DONE)
    assert b'"content":"c"' in rest and b'"completion_tokens":3' in rest
    assert ctx.usage == Usage(prompt_tokens=2, completion_tokens=3)


def test_an_error_mid_read_comes_after_the_events_before_it(db: None) -> None:
    upstream, response = _wire_pair()
    good = _event({"content": "x"})
    role = _event({"role": "assistant", "content": ""})
    upstream.sendall(role + good + good + b"data: {oops}\n\n")
    upstream.close()

    adapter = OpenAICompatibleProvider(
        ProviderConfig(name="up", kind="openai", base_url="http://x")
    )
    stream = ChatStream(iter(()), id="", model="m", created=1, close=response.close)
    stream.set_batches(adapter._parse_batches(response, stream))
    stream.passthrough = True
    ctx = _ctx()
    first = next(stream)
    body = b"".join(relay(stream, first, ctx, ChatEncoder(stream, ctx, False)))
    events = [orjson.loads(e[6:]) for e in body.split(b"\n\n") if e]
    assert [e["choices"][0]["delta"].get("content") for e in events[:3]] == ["", "x", "x"]
    assert events[-1]["error"]["code"] == "upstream_bad_response"
    assert ctx.stream_complete is False
