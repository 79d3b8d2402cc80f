"""Content chunks relayed as upstream's bytes still give exact usage and
finish_reason (issue 19), and only same-shaped content chunks pass through.

The upstream sends raw SSE frames (tests.hostile_upstream), so the bytes the
gateway scans are exactly what is asserted on.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import requests

from providers.base import ChatChunk
from providers.passthrough import ChunkScanner
from routing.models import UsageRecord
from routing.usage import records as usage
from tests.conftest import LiveGateway, openai_catalog
from tests.hostile_upstream import Reply, hostile_upstream


def _chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-up",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-mock",
        "system_fingerprint": "fp_up",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
        **extra,
    }


def _frame(payload: dict[str, Any], *, ascii_only: bool = False) -> bytes:
    if ascii_only:
        import json

        # Python's json escapes non-ASCII text as \\uXXXX, as many servers do.
        return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"
    return b"data: " + orjson.dumps(payload) + b"\n\n"


# Upstream's order: "logprobs" before "finish_reason", then "usage": the
# gateway's own serialiser writes neither this way, so these bytes in an
# event the client got prove the event was passed through.
UPSTREAM_TAIL = b'"logprobs":null,"finish_reason":null}],"usage":null}'
USAGE = {"prompt_tokens": 7, "completion_tokens": 5}
TEXTS = ["Привет", ", ", 'мир "в кавычках"', ' а это\\ не "}]} конец', "!"]


def test_a_passthrough_stream_keeps_exact_usage_and_finish_reason(
    live_server: Any, transactional_db: None, load_catalog: Any, make_key: Any
) -> None:
    frames = [_frame(_chunk({"role": "assistant", "content": ""}))]
    frames += [_frame(_chunk({"content": text}), ascii_only=n == 2) for n, text in enumerate(TEXTS)]
    frames += [
        _frame(_chunk({}, "length")),
        _frame({**_chunk({}), "choices": [], "usage": USAGE}),
        b"data: [DONE]\n\n",
    ]
    with hostile_upstream() as upstream:
        upstream.reply = Reply(stream=frames)
        load_catalog(openai_catalog(upstream.base_url))
        gateway = LiveGateway(live_server.url, make_key().plaintext)
        response = requests.post(
            gateway.url + "/v1/chat/completions",
            data=orjson.dumps(
                {
                    "model": "local/mock",
                    "stream": True,
                    "stream_options": {"include_usage": True},
                    "messages": [{"role": "user", "content": "hi"}],
                }
            ),
            headers=gateway.headers,
            timeout=30,
        )
    assert response.status_code == 200, response.text
    lines = [line for line in response.content.split(b"\n") if line.startswith(b"data: ")]
    assert lines[-1] == b"data: [DONE]"
    events = [orjson.loads(line[6:]) for line in lines[:-1]]
    generation_id = events[0]["id"]
    assert {(e["id"], e["model"], e["object"]) for e in events} == {
        (generation_id, "local/mock", "chat.completion.chunk")
    }
    text = "".join(c["delta"].get("content") or "" for e in events for c in e["choices"])
    assert text == "".join(TEXTS)
    passed = [line for line in lines if line.endswith(UPSTREAM_TAIL)]
    # The first content chunk is parsed (it teaches the shape); the rest,
    # escaped or not, go through as upstream's bytes.
    assert len(passed) == len(TEXTS) - 1
    assert [e["choices"][0]["finish_reason"] for e in events if e["choices"]][-1] == "length"
    shown = events[-1]["usage"]
    assert (shown["prompt_tokens"], shown["completion_tokens"], shown["total_tokens"]) == (7, 5, 12)

    sink = usage.stream_sink()
    if sink is not None:
        while sink.consume_once(block_ms=10):
            pass
    usage.flush_all()
    record = UsageRecord.objects.get()
    assert record.generation_id == generation_id
    assert (record.prompt_tokens, record.completion_tokens) == (7, 5)
    assert record.finish_reason == "length"


def _payload(frame: bytes) -> bytes:
    return frame[6:-2]


def _learned() -> ChunkScanner:
    scanner = ChunkScanner()
    first = _chunk({"content": "a"})
    scanner.learn(_payload(_frame(first)), first)
    return scanner


def test_scanner_passes_same_shaped_content_with_its_text() -> None:
    scanner = _learned()
    frame = _payload(_frame(_chunk({"content": 'Привет "x" \\ y'})))
    chunk = scanner.chunk(frame)
    assert chunk == ChatChunk(content='Привет "x" \\ y', raw=frame[frame.index(b'"choices"') :])
    escaped = _payload(_frame(_chunk({"content": "Привет"}), ascii_only=True))
    assert escaped.count(b"\\u") == 6
    assert scanner.chunk(escaped) == ChatChunk(
        content="Привет", raw=escaped[escaped.index(b'"choices"') :]
    )


@pytest.mark.parametrize(
    "payload",
    [
        _chunk({"content": "x"}, "stop"),
        _chunk({"content": "x"}, usage={"prompt_tokens": 1, "completion_tokens": 1}),
        _chunk({"role": "assistant", "content": "x"}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
        {**_chunk({"content": "x"}), "id": "chatcmpl-other"},
        {**_chunk({"content": "x"}), "model": "another"},
        {**_chunk({"content": "x"}), "obfuscation": "abc"},
        {
            **_chunk({"content": "x"}),
            "choices": [
                {"index": 0, "delta": {"content": "x"}, "logprobs": None, "finish_reason": None},
                {"index": 1, "delta": {"content": "y"}, "logprobs": None, "finish_reason": None},
            ],
        },
    ],
)
def test_scanner_leaves_every_other_chunk_to_the_full_parse(payload: dict[str, Any]) -> None:
    assert _learned().chunk(_payload(_frame(payload))) is None


def test_scanner_refuses_a_text_that_closes_its_string_early() -> None:
    """Bytes that fit prefix and suffix but hide other keys are not one string."""
    scanner = _learned()
    learned = _payload(_frame(_chunk({"content": "a"})))
    prefix, suffix = learned.split(b'"a"', 1)
    forged = prefix + b'"x","role":"tool' + b'"' + suffix
    assert scanner.chunk(forged) is None
    forged_escape = prefix + b'"x\\\\","role":"tool' + b'"' + suffix
    assert scanner.chunk(forged_escape) is None


def test_scanner_learns_nothing_from_a_chunk_that_is_not_plain_content() -> None:
    scanner = ChunkScanner()
    role = _chunk({"role": "assistant", "content": "a"})
    scanner.learn(_payload(_frame(role)), role)
    assert scanner.chunk(_payload(_frame(_chunk({"content": "b"})))) is None
