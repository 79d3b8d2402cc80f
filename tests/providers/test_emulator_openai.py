"""The OpenAI emulator, driven by the official ``openai`` SDK and raw HTTP.

Independent of Django: run with ``pytest -p no:django``.
"""

from __future__ import annotations

import base64
import json
import struct
import time
from typing import Any

import openai
import pytest
import requests

from providers.emulators.testing import EmulatorControl

AUTH = {"Authorization": "Bearer sk-test"}
MESSAGES: list[Any] = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hello big world"},
]


def client(base_url: str, **kwargs: Any) -> openai.OpenAI:
    """SDK client without retries, so each fault is seen exactly once."""
    options: dict[str, Any] = {"api_key": "sk-test", "max_retries": 0, "timeout": 5.0}
    options.update(kwargs)
    return openai.OpenAI(base_url=base_url + "/v1", **options)


def post_chat(base_url: str, body: dict[str, Any], **kwargs: Any) -> requests.Response:
    """Raw POST to the chat endpoint."""
    headers = {**AUTH, **kwargs.pop("headers", {})}
    return requests.post(
        base_url + "/v1/chat/completions", json=body, headers=headers, timeout=5, **kwargs
    )


def sse_payloads(text: str) -> list[str]:
    """Return the ``data:`` payloads of an SSE body, in order."""
    return [line[len("data: ") :] for line in text.split("\n\n") if line.startswith("data: ")]


# ---- happy paths through the SDK ------------------------------------------


def test_chat_plain(openai_emulator: str, openai_emulator_control: EmulatorControl) -> None:
    result = client(openai_emulator).chat.completions.create(model="gpt-mock", messages=MESSAGES)
    assert result.object == "chat.completion"
    assert result.id.startswith("chatcmpl-")
    assert result.model == "gpt-mock"
    choice = result.choices[0]
    assert choice.index == 0
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == "Ответ: Echo: hello big world"
    assert result.usage is not None
    # 1 + 2 words (system) + 1 + 3 words (user); reply has 5 words.
    assert result.usage.prompt_tokens == 7
    assert result.usage.completion_tokens == 5
    assert result.usage.total_tokens == 12
    assert result.usage.prompt_tokens_details is not None
    assert result.usage.prompt_tokens_details.cached_tokens == 0

    last = openai_emulator_control.stats()["last_request"]
    assert last["path"] == "/v1/chat/completions"
    assert last["headers"]["authorization"] == "Bearer sk-test"
    assert last["json"]["messages"] == MESSAGES


def test_chat_stream_with_usage(
    openai_emulator: str, openai_emulator_control: EmulatorControl
) -> None:
    stream = client(openai_emulator).chat.completions.create(
        model="gpt-mock",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Ответ: Echo: hello big world"
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) == 5  # stream_tokens of the fixture
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finishing] == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 12
    assert all(c.usage is None for c in chunks[:-1])

    stats = openai_emulator_control.stats()
    assert stats["last_request"]["json"]["stream_options"] == {"include_usage": True}
    assert stats["streams_completed"] == 1
    assert stats["open_streams"] == 0


def test_raw_stream_wire_format(openai_emulator: str) -> None:
    response = post_chat(openai_emulator, {"model": "m", "messages": MESSAGES, "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    payloads = sse_payloads(response.content.decode("utf-8"))
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    # Without include_usage there is no usage key and no trailing usage chunk.
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[0]["choices"][0]["logprobs"] is None


def test_chat_max_tokens_stop_and_n(openai_emulator: str) -> None:
    sdk = client(openai_emulator)
    short = sdk.chat.completions.create(model="m", messages=MESSAGES, max_tokens=3)
    assert short.choices[0].message.content == "Ответ: Echo: hello"
    assert short.choices[0].finish_reason == "length"
    assert short.usage is not None and short.usage.completion_tokens == 3

    modern = sdk.chat.completions.create(model="m", messages=MESSAGES, max_completion_tokens=2)
    assert modern.choices[0].message.content == "Ответ: Echo:"

    stopped = sdk.chat.completions.create(model="m", messages=MESSAGES, stop=[" big"])
    assert stopped.choices[0].message.content == "Ответ: Echo: hello"
    assert stopped.choices[0].finish_reason == "stop"

    with pytest.raises(openai.BadRequestError) as excinfo:
        sdk.chat.completions.create(model="m", messages=MESSAGES, n=2)
    assert excinfo.value.status_code == 400
    assert isinstance(excinfo.value.body, dict)
    assert excinfo.value.body["param"] == "n"
    assert excinfo.value.body["type"] == "invalid_request_error"


WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}


def test_tool_calls_round_trip(openai_emulator: str) -> None:
    sdk = client(openai_emulator)
    ask: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = sdk.chat.completions.create(model="m", messages=ask, tools=[WEATHER_TOOL])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_")
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris", "unit": "celsius"}

    follow_up = [
        *ask,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
    ]
    second = sdk.chat.completions.create(model="m", messages=follow_up, tools=[WEATHER_TOOL])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "Ответ: Tool result: sunny, 21 C"

    # The same call, streamed: arguments arrive in fragments after the header.
    stream = sdk.chat.completions.create(model="m", messages=ask, tools=[WEATHER_TOOL], stream=True)
    chunks = [c for c in stream if c.choices]
    head = chunks[0].choices[0].delta.tool_calls
    assert head is not None and head[0].id == call.id
    arguments = "".join(
        (d.function.arguments or "")
        for c in chunks
        for d in (c.choices[0].delta.tool_calls or [])
        if d.function is not None
    )
    assert arguments == call.function.arguments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    # No trigger word: plain text even with tools offered.
    plain = sdk.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], tools=[WEATHER_TOOL]
    )
    assert plain.choices[0].message.tool_calls is None


def test_embeddings_base64_default_and_float(openai_emulator: str) -> None:
    sdk = client(openai_emulator)
    # The SDK asks for base64 unless told otherwise and decodes it itself.
    result = sdk.embeddings.create(model="text-embedding-mock", input=["alpha", "beta gamma"])
    assert result.object == "list"
    assert [d.index for d in result.data] == [0, 1]
    assert all(len(d.embedding) == 8 for d in result.data)
    assert result.usage.prompt_tokens == 3
    assert result.usage.total_tokens == 3
    assert result.data[0].embedding != result.data[1].embedding
    norm = sum(v * v for v in result.data[0].embedding)
    assert abs(norm - 1.0) < 1e-5

    raw = requests.post(
        openai_emulator + "/v1/embeddings",
        json={"model": "m", "input": "alpha", "encoding_format": "float"},
        headers=AUTH,
        timeout=5,
    ).json()
    assert raw["data"][0]["object"] == "embedding"
    assert raw["data"][0]["embedding"] == result.data[0].embedding

    b64 = requests.post(
        openai_emulator + "/v1/embeddings",
        json={"model": "m", "input": "alpha", "encoding_format": "base64", "dimensions": 4},
        headers=AUTH,
        timeout=5,
    ).json()
    decoded = struct.unpack("<4f", base64.b64decode(b64["data"][0]["embedding"]))
    assert len(decoded) == 4

    tokens = sdk.embeddings.create(model="m", input=[[1, 2, 3]])
    assert tokens.usage.prompt_tokens == 3


def test_models_list_and_retrieve(openai_emulator: str) -> None:
    sdk = client(openai_emulator)
    ids = [m.id for m in sdk.models.list()]
    assert ids == ["gpt-mock", "gpt-mock-large", "text-embedding-mock"]
    model = sdk.models.retrieve("gpt-mock-large")
    assert model.id == "gpt-mock-large"
    assert model.object == "model"
    with pytest.raises(openai.NotFoundError) as excinfo:
        sdk.models.retrieve("no-such-model")
    assert isinstance(excinfo.value.body, dict)
    assert excinfo.value.body["code"] == "model_not_found"


# ---- errors ----------------------------------------------------------------


def test_auth_errors(openai_emulator: str, openai_emulator_control: EmulatorControl) -> None:
    missing = requests.post(
        openai_emulator + "/v1/chat/completions",
        json={"model": "m", "messages": MESSAGES},
        timeout=5,
    )
    assert missing.status_code == 401
    assert set(missing.json()["error"]) == {"message", "type", "param", "code"}

    openai_emulator_control.set_config(api_key="sk-right")
    with pytest.raises(openai.AuthenticationError) as excinfo:
        client(openai_emulator, api_key="sk-wrong-key").models.list()
    assert isinstance(excinfo.value.body, dict)
    assert excinfo.value.body["code"] == "invalid_api_key"
    assert client(openai_emulator, api_key="sk-right").models.list().data


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": MESSAGES}, "model"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}, "messages.[0].role"),
        ({"model": "m", "messages": MESSAGES, "stream_options": {}}, "stream_options"),
        ({"model": "m", "messages": MESSAGES, "max_tokens": 0}, "max_tokens"),
    ],
)
def test_validation_errors_name_the_param(
    openai_emulator: str, body: dict[str, Any], param: str
) -> None:
    response = post_chat(openai_emulator, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_invalid_json_unknown_path_and_wrong_method(openai_emulator: str) -> None:
    bad = requests.post(
        openai_emulator + "/v1/chat/completions", data=b"{nope", headers=AUTH, timeout=5
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"

    missing = requests.get(openai_emulator + "/v1/nothing-here", headers=AUTH, timeout=5)
    assert missing.status_code == 404
    assert "error" in missing.json()

    wrong = requests.get(openai_emulator + "/v1/chat/completions", headers=AUTH, timeout=5)
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert "error" in wrong.json()


# ---- faults ----------------------------------------------------------------


def fault_header(fault: str) -> dict[str, str]:
    """Per-request fault override header."""
    return {"X-Emulator-Fault": fault}


def test_fault_http_503_and_429(openai_emulator: str) -> None:
    sdk = client(openai_emulator)
    with pytest.raises(openai.InternalServerError) as server_error:
        sdk.chat.completions.create(
            model="m", messages=MESSAGES, extra_headers=fault_header("http_503")
        )
    assert server_error.value.status_code == 503
    assert isinstance(server_error.value.body, dict)
    assert server_error.value.body["type"] == "server_error"

    with pytest.raises(openai.RateLimitError) as rate_limited:
        sdk.chat.completions.create(
            model="m", messages=MESSAGES, extra_headers=fault_header("http_429")
        )
    assert rate_limited.value.response.headers["retry-after"] == "1"
    assert isinstance(rate_limited.value.body, dict)
    assert rate_limited.value.body["code"] == "rate_limit_exceeded"


def test_fault_timeout(openai_emulator: str, openai_emulator_control: EmulatorControl) -> None:
    sdk = client(openai_emulator, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        sdk.chat.completions.create(
            model="m", messages=MESSAGES, extra_headers=fault_header("timeout")
        )
    assert time.monotonic() - started < 3
    # The emulator notices the client giving up instead of hanging on for 300 s.
    openai_emulator_control.wait_for(
        lambda s: s["open_hangs"] == 0 and s["hangs_abandoned"] == 1, timeout=2.0
    )


def test_fault_timeout_expires(
    openai_emulator: str, openai_emulator_control: EmulatorControl
) -> None:
    openai_emulator_control.set_config(fault="timeout", timeout_s=0.2)
    response = post_chat(openai_emulator, {"model": "m", "messages": MESSAGES})
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "server_error"


def test_fault_malformed(openai_emulator: str) -> None:
    sdk = client(openai_emulator)
    with pytest.raises((ValueError, openai.APIError)):
        sdk.chat.completions.create(
            model="m", messages=MESSAGES, extra_headers=fault_header("malformed")
        )

    raw = post_chat(
        openai_emulator,
        {"model": "m", "messages": MESSAGES, "stream": True},
        headers=fault_header("malformed"),
    )
    payloads = sse_payloads(raw.content.decode("utf-8"))
    broken = []
    for payload in payloads[:-1]:
        try:
            json.loads(payload)
        except ValueError:
            broken.append(payload)
    assert len(broken) == 1
    assert payloads[-1] == "[DONE]"


def test_fault_cut(openai_emulator: str, openai_emulator_control: EmulatorControl) -> None:
    sdk = client(openai_emulator)
    with pytest.raises(openai.APIConnectionError):
        sdk.chat.completions.create(model="m", messages=MESSAGES, extra_headers=fault_header("cut"))

    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        stream = sdk.chat.completions.create(
            model="m", messages=MESSAGES, stream=True, extra_headers=fault_header("cut")
        )
        for chunk in stream:
            received.append(chunk.choices[0].finish_reason or "")
    assert "stop" not in received  # the stream never reached its end

    # Seen from raw HTTP: some frames, then a broken connection, never [DONE].
    seen = b""
    with pytest.raises(requests.exceptions.RequestException):
        with post_chat(
            openai_emulator,
            {"model": "m", "messages": MESSAGES, "stream": True},
            headers=fault_header("cut"),
            stream=True,
        ) as response:
            for piece in response.iter_content(chunk_size=None):
                seen += piece
    assert b"[DONE]" not in seen
    assert openai_emulator_control.stats()["streams_cut"] == 2


def test_fault_slow(openai_emulator: str, openai_emulator_control: EmulatorControl) -> None:
    openai_emulator_control.set_config(latency_ms=40)
    started = time.monotonic()
    response = post_chat(
        openai_emulator,
        {"model": "m", "messages": MESSAGES, "stream": True},
        headers=fault_header("slow"),
    )
    elapsed = time.monotonic() - started
    assert sse_payloads(response.text)[-1] == "[DONE]"
    # 40 ms up front plus (10 + 40) ms before each of the 6 later frames.
    assert elapsed >= 0.3


# ---- runtime control -------------------------------------------------------


def test_runtime_config_and_fault_count(
    openai_emulator: str, openai_emulator_control: EmulatorControl
) -> None:
    control = openai_emulator_control
    assert control.config()["fault"] == "none"
    updated = control.set_config(fault="http_500", fault_count=2)
    assert updated["fault"] == "http_500"
    assert updated["stream_tokens"] == 5  # untouched knobs keep their values

    statuses = [
        post_chat(openai_emulator, {"model": "m", "messages": MESSAGES}).status_code
        for _ in range(3)
    ]
    assert statuses == [500, 500, 200]
    assert control.config()["fault"] == "none"  # auto-cleared
    stats = control.stats()
    assert stats["requests_by_fault"] == {"http_500": 2, "none": 1}
    assert stats["requests_by_path"] == {"/v1/chat/completions": 3}

    # The header beats the configured fault, for that request only.
    control.set_config(fault="http_503")
    assert post_chat(
        openai_emulator, {"model": "m", "messages": MESSAGES}, headers=fault_header("none")
    ).ok
    assert post_chat(openai_emulator, {"model": "m", "messages": MESSAGES}).status_code == 503
    assert (
        post_chat(
            openai_emulator, {"model": "m", "messages": MESSAGES}, headers=fault_header("http_400")
        ).status_code
        == 400
    )

    control.set_config(fault_rate=0.0)
    assert post_chat(openai_emulator, {"model": "m", "messages": MESSAGES}).ok

    with pytest.raises(ValueError, match="unknown fault"):
        control.set_config(fault="explode")
    with pytest.raises(ValueError, match="unknown knob"):
        control.set_config(no_such_knob=1)
    with pytest.raises(ValueError, match="fault_rate"):
        control.set_config(fault_rate=2)

    control.reset()
    assert control.config()["fault"] == "none"
    assert control.config()["fault_rate"] == 1.0
    assert control.stats()["requests_total"] == 0


def test_client_disconnect_is_counted(
    openai_emulator: str, openai_emulator_control: EmulatorControl
) -> None:
    # Slow the stream down so the client surely leaves before the end.
    openai_emulator_control.set_config(chunk_interval_ms=200, stream_tokens=20)
    response = post_chat(
        openai_emulator, {"model": "m", "messages": MESSAGES, "stream": True}, stream=True
    )
    first = next(response.iter_content(chunk_size=None))
    assert first.startswith(b"data: ")
    response.close()

    stats = openai_emulator_control.wait_for(lambda s: s["streams_closed_early"] == 1, timeout=2.0)
    assert stats["open_streams"] == 0
    assert stats["streams_completed"] == 0
