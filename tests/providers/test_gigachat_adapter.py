"""The GigaChat adapter against the GigaChat emulator, over real HTTP.

Covers the OpenAI <-> GigaChat mapping (the emulator records the exact body
the adapter sent), the token life cycle (cache, refresh ahead of expiry,
single flight, one retry on 401) and the error mapping of every fault.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
import time_machine

from providers.base import (
    ChatRequest,
    EmbeddingRequest,
    FinishReason,
    Message,
    ProviderConfig,
    Tool,
    ToolCall,
)
from providers.emulators.testing import RunningEmulator, start_emulator
from providers.errors import ProviderError
from providers.gigachat import GigaChatProvider
from providers.gigachat.auth import expires_at_seconds
from providers.gigachat.mapping import (
    JSON_MODE_INSTRUCTION,
    StopScanner,
    function_result,
    tool_call_id,
    usage_from_gigachat,
)

CREDENTIALS = base64.b64encode(b"adapter:secret").decode()
FIXTURES = Path(__file__).parent / "fixtures" / "gigachat"
WEATHER_TOOL = Tool(
    name="weather_forecast",
    description="Forecast for a city",
    parameters={
        "type": "object",
        "properties": {"location": {"type": "string"}, "num_days": {"type": "integer"}},
        "required": ["location"],
    },
)


@pytest.fixture(scope="module")
def emulator_process() -> Iterator[RunningEmulator]:
    emulator = start_emulator(
        "gigachat", stream_tokens=4, chunk_interval_ms=2, credentials=CREDENTIALS
    )
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def emulator(emulator_process: RunningEmulator) -> RunningEmulator:
    emulator_process.control.reset()
    return emulator_process


@pytest.fixture
def make_adapter(emulator: RunningEmulator) -> Iterator[Callable[..., GigaChatProvider]]:
    """Build adapters (each one is what a separate worker would hold)."""
    made: list[GigaChatProvider] = []

    def make(credential: str = CREDENTIALS, **options: Any) -> GigaChatProvider:
        config = ProviderConfig(
            name="giga",
            kind="gigachat",
            base_url=emulator.url("/api/v1"),
            credential=credential,
            options={"auth_url": emulator.url("/api/v2/oauth"), **options},
            read_timeout=5.0,
        )
        adapter = GigaChatProvider(config)
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        adapter.close()


@pytest.fixture
def adapter(make_adapter: Callable[..., GigaChatProvider]) -> GigaChatProvider:
    return make_adapter()


def sent(emulator: RunningEmulator, path: str = "/api/v1/chat/completions") -> dict[str, Any]:
    """Return the last request the emulator saw on ``path``."""
    for entry in reversed(emulator.control.stats()["recent_requests"]):
        if entry["path"] == path:
            return entry  # type: ignore[no-any-return]
    raise AssertionError(f"no request to {path}")


def user(text: str) -> Message:
    return Message(role="user", content=text)


# ---- request mapping ---------------------------------------------------------


def test_chat_maps_roles_sampling_and_headers(
    emulator: RunningEmulator, make_adapter: Callable[..., GigaChatProvider]
) -> None:
    """System goes first, later system turns become user, temperature 0 is 0.001."""
    adapter = make_adapter(repetition_penalty=1.1)
    result = adapter.chat(
        ChatRequest(
            model="GigaChat-2-Max",
            messages=[
                user("Hello there"),
                Message(role="system", content="Be brief."),
                Message(role="developer", content="Answer in Russian."),
                Message(role="assistant", content="Hi."),
                Message(role="user", content=[{"type": "text", "text": "How are you?"}]),
            ],
            temperature=0,
            top_p=0.5,
            max_tokens=50,
            seed=7,
            user="alice@example.com",
            request_id="req-123",
            extra={"session_id": "conv-42"},
        )
    )
    request = sent(emulator)
    assert request["json"] == {
        "model": "GigaChat-2-Max",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello there"},
            {"role": "user", "content": "Answer in Russian."},
            {"role": "assistant", "content": "Hi."},
            {"role": "user", "content": "How are you?"},
        ],
        "temperature": 0.001,
        "top_p": 0.5,
        "max_tokens": 50,
        "repetition_penalty": 1.1,
    }
    headers = request["headers"]
    assert headers["x-request-id"] == "req-123"
    assert headers["x-session-id"] == "conv-42"
    # An e-mail address is not handed to Sber; its digest is.
    assert headers["x-client-id"] == hashlib.sha256(b"alice@example.com").hexdigest()
    assert headers["authorization"].startswith("Bearer eyJ")
    assert result.model == "GigaChat-2-Max:2.0.28.2"
    assert result.model_version == "2.0.28.2"
    assert result.choices[0].message.content == "Ответ: Echo: How are you?"
    assert result.choices[0].finish_reason == FinishReason.STOP
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (16, 5)


def test_same_session_reports_cached_prompt_tokens(adapter: GigaChatProvider) -> None:
    """Reusing X-Session-ID surfaces precached_prompt_tokens as cached tokens."""
    request = ChatRequest(
        model="GigaChat-2", messages=[user("one two three")], extra={"session_id": "s-1"}
    )
    first = adapter.chat(request).usage
    assert (first.prompt_tokens, first.cached_tokens, first.billed_prompt_tokens) == (4, 0, 4)
    second = adapter.chat(request).usage
    # GigaChat said prompt_tokens 0 + precached 4: OpenAI's prompt_tokens
    # include the cached part, and only the processed part is billed.
    assert (second.prompt_tokens, second.cached_tokens, second.billed_prompt_tokens) == (4, 4, 0)
    assert second.total_tokens == second.prompt_tokens + second.completion_tokens
    assert second.as_openai()["prompt_tokens_details"]["cached_tokens"] <= second.prompt_tokens


def test_cached_tokens_from_the_documented_usage_shape() -> None:
    """A usage object as GigaChat sends it: the cached part on top of prompt_tokens."""
    usage = usage_from_gigachat(
        {
            "prompt_tokens": 120,
            "completion_tokens": 30,
            "total_tokens": 150,
            "precached_prompt_tokens": 900,
        }
    )
    assert (usage.prompt_tokens, usage.cached_tokens, usage.billed_prompt_tokens) == (
        1020,
        900,
        120,
    )
    assert usage.total_tokens == 1050


def test_tool_call_round_trip_mapping(emulator: RunningEmulator, adapter: GigaChatProvider) -> None:
    """functions out, a stable tool call back, history turned into call/result pairs."""
    first = adapter.chat(
        ChatRequest(
            model="GigaChat-2-Pro",
            messages=[user("What is the weather in Manzherok?")],
            tools=[WEATHER_TOOL],
            tool_choice="auto",
        )
    )
    body = sent(emulator)["json"]
    assert body["functions"] == [
        {
            "name": "weather_forecast",
            "description": "Forecast for a city",
            "parameters": WEATHER_TOOL.parameters,
        }
    ]
    assert body["function_call"] == "auto"
    choice = first.choices[0]
    assert choice.finish_reason == FinishReason.TOOL_CALLS
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.name == "weather_forecast"
    assert orjson.loads(call.arguments) == {"location": "Manzherok", "num_days": 1}
    assert call.id.startswith("call_") and len(call.id) == 41  # call_<uuid>
    state_id = call.id.removeprefix("call_")

    # The client answers with two parallel calls' results (OpenAI style).
    second_call = ToolCall(
        id="call_abc", name="weather_forecast", arguments='{"location": "Sochi"}'
    )
    follow_up = adapter.chat(
        ChatRequest(
            model="GigaChat-2-Pro",
            messages=[
                user("What is the weather in Manzherok?"),
                Message(role="assistant", content=None, tool_calls=[call, second_call]),
                Message(role="tool", tool_call_id="call_abc", content="sunny"),
                Message(role="tool", tool_call_id=call.id, content='{"temperature": 12}'),
            ],
            tools=[WEATHER_TOOL],
        )
    )
    assert sent(emulator)["json"]["messages"][1:] == [
        {
            "role": "assistant",
            "content": "",
            "function_call": {
                "name": "weather_forecast",
                "arguments": orjson.loads(call.arguments),
            },
            "functions_state_id": state_id,
        },
        {"role": "function", "name": "weather_forecast", "content": '{"temperature":12}'},
        {
            "role": "assistant",
            "content": "",
            "function_call": {"name": "weather_forecast", "arguments": {"location": "Sochi"}},
        },
        {"role": "function", "name": "weather_forecast", "content": '{"result":"sunny"}'},
    ]
    assert follow_up.choices[0].message.content == 'Ответ: Function result: {"result":"sunny"}'


def test_tool_choice_variants(emulator: RunningEmulator, adapter: GigaChatProvider) -> None:
    """Named and required choices force the call; none keeps functions unused."""
    request = ChatRequest(model="GigaChat-2", messages=[user("hello")], tools=[WEATHER_TOOL])
    request.tool_choice = {"type": "function", "function": {"name": "weather_forecast"}}
    assert adapter.chat(request).choices[0].message.tool_calls
    assert sent(emulator)["json"]["function_call"] == {"name": "weather_forecast"}
    request.tool_choice = "required"
    assert adapter.chat(request).choices[0].finish_reason == FinishReason.TOOL_CALLS
    request.tool_choice = "none"
    request.messages = [user("weather please")]
    assert adapter.chat(request).choices[0].message.tool_calls == []
    assert sent(emulator)["json"]["function_call"] == "none"


def test_tool_result_without_a_call_is_refused(adapter: GigaChatProvider) -> None:
    """A tool message nobody asked for cannot be named, so it is a 400."""
    with pytest.raises(ProviderError, match="unknown tool_call_id") as caught:
        adapter.chat(
            ChatRequest(
                model="GigaChat-2",
                messages=[user("hi"), Message(role="tool", tool_call_id="call_x", content="1")],
            )
        )
    assert (caught.value.status, caught.value.retryable) == (400, False)


def test_response_format_json_schema_is_emulated(
    emulator: RunningEmulator, adapter: GigaChatProvider
) -> None:
    """json_schema becomes a forced function; its arguments come back as content."""
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    }
    request = ChatRequest(
        model="GigaChat-2-Max",
        messages=[user("Plan a trip in Kazan")],
        response_format={"type": "json_schema", "json_schema": {"name": "trip", "schema": schema}},
    )
    result = adapter.chat(request)
    body = sent(emulator)["json"]
    assert body["function_call"] == {"name": "trip"}
    assert body["functions"][0]["parameters"] == schema
    assert result.choices[0].finish_reason == FinishReason.STOP
    assert result.choices[0].message.tool_calls == []
    assert orjson.loads(result.choices[0].message.text()) == {"city": "Kazan", "days": 1}

    request.stream = True
    chunks = list(adapter.stream(request))
    assert "".join(c.content or "" for c in chunks) == result.choices[0].message.content
    assert chunks[-1].finish_reason == FinishReason.STOP


def test_response_format_json_object_is_emulated(
    emulator: RunningEmulator, adapter: GigaChatProvider
) -> None:
    """LangChain's json_mode: bare JSON asked for in the system message, fence removed."""
    result = adapter.chat(
        ChatRequest(
            model="GigaChat-2",
            messages=[Message(role="system", content="Be brief."), user("hi there")],
            response_format={"type": "json_object"},
        )
    )
    body = sent(emulator)["json"]
    assert "response_format" not in body
    assert body["messages"][0] == {
        "role": "system",
        "content": "Be brief.\n\n" + JSON_MODE_INSTRUCTION,
    }
    content = result.choices[0].message.content
    assert content is not None
    assert orjson.loads(content) == {"answer": "Echo: hi there"}
    # No system message of the client's own: one is added.
    adapter.chat(
        ChatRequest(
            model="GigaChat-2", messages=[user("x")], response_format={"type": "json_object"}
        )
    )
    assert sent(emulator)["json"]["messages"][0] == {
        "role": "system",
        "content": JSON_MODE_INSTRUCTION,
    }


def test_tool_schemas_are_normalised_for_gigachat(
    emulator: RunningEmulator, adapter: GigaChatProvider
) -> None:
    """What pydantic and LangChain send ($ref, Optional, type lists) reaches GigaChat flat."""
    pydantic_schema = {
        "$defs": {
            "Unit": {"enum": ["celsius", "fahrenheit"], "title": "Unit", "type": "string"},
            "Place": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "country": {"type": ["string", "null"]}},
                "required": ["city"],
            },
        },
        "type": "object",
        "properties": {
            "place": {"$ref": "#/$defs/Place"},
            "unit": {"anyOf": [{"$ref": "#/$defs/Unit"}, {"type": "null"}], "default": None},
            "days": {"anyOf": [{"type": "integer"}, {"type": "null"}], "description": "1..7"},
            "level": {"enum": [1, 2, 3]},
            "tags": {"type": "array"},
            "contact": {"type": "string", "format": "email"},
            "when": {"type": "string", "format": "date"},
            "extra": {"type": "object"},
        },
        "required": ["place"],
    }
    # The emulator is as strict as GigaChat: the raw schema is a 422.
    raw = {
        "model": "GigaChat-2",
        "messages": [{"role": "user", "content": "weather"}],
        "functions": [{"name": "weather_forecast", "parameters": pydantic_schema}],
    }
    token = adapter.tokens.get()
    refused = requests.post(
        emulator.url("/api/v1/chat/completions"),
        json=raw,
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    assert refused.status_code == 422

    tool = Tool(name="weather_forecast", parameters=pydantic_schema)
    result = adapter.chat(
        ChatRequest(model="GigaChat-2", messages=[user("weather in Sochi")], tools=[tool])
    )
    assert result.choices[0].finish_reason == FinishReason.TOOL_CALLS
    assert sent(emulator)["json"]["functions"][0]["parameters"] == {
        "type": "object",
        "properties": {
            "place": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
                "required": ["city"],
            },
            "unit": {
                "enum": ["celsius", "fahrenheit"],
                "title": "Unit",
                "type": "string",
                "default": None,
            },
            "days": {"type": "integer", "description": "1..7"},
            "level": {"enum": [1, 2, 3], "type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "contact": {"type": "string"},
            "when": {"type": "string", "format": "date"},
            "extra": {"type": "object", "properties": {}},
        },
        "required": ["place"],
    }


def test_state_id_is_echoed_then_dropped_on_422(
    emulator: RunningEmulator, adapter: GigaChatProvider
) -> None:
    """Echo functions_state_id as documented; a deployment that refuses it gets one retry."""
    first = adapter.chat(
        ChatRequest(model="GigaChat-2", messages=[user("weather in Omsk")], tools=[WEATHER_TOOL])
    )
    (call,) = first.choices[0].message.tool_calls
    history = [
        user("weather in Omsk"),
        Message(role="assistant", tool_calls=[call]),
        Message(role="tool", tool_call_id=call.id, content='{"t": 3}'),
    ]
    request = ChatRequest(model="GigaChat-2", messages=history, tools=[WEATHER_TOOL])
    adapter.chat(request)
    assert sent(emulator)["json"]["messages"][1]["functions_state_id"] == call.id[5:]

    emulator.control.set_config(reject_state_ids=True)
    before = emulator.control.stats()["requests_total"]
    answer = adapter.chat(request)
    assert answer.choices[0].message.content == 'Ответ: Function result: {"t":3}'
    recent = emulator.control.stats()["recent_requests"]
    assert emulator.control.stats()["requests_total"] - before == 2
    assert "functions_state_id" in recent[-2]["json"]["messages"][1]
    assert "functions_state_id" not in recent[-1]["json"]["messages"][1]
    # Only once: a 422 for another reason is not retried forever.
    emulator.control.set_config(fault="http_422")
    with pytest.raises(ProviderError) as caught:
        adapter.chat(request)
    assert caught.value.status == 400


def test_stop_sequences_are_applied_locally(adapter: GigaChatProvider) -> None:
    """GigaChat has no stop field: the adapter cuts plain and streamed text."""
    request = ChatRequest(
        model="GigaChat-2", messages=[user("alpha beta gamma delta")], stop=["gamma"]
    )
    result = adapter.chat(request)
    assert result.choices[0].message.content == "Ответ: Echo: alpha beta "
    request.stream = True
    chunks = list(adapter.stream(request))
    assert "".join(c.content or "" for c in chunks) == "Ответ: Echo: alpha beta "
    finishing = [c for c in chunks if c.finish_reason is not None]
    assert [c.finish_reason for c in finishing] == [FinishReason.STOP]
    # Usage still arrives (billing), after the early finish.
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6


def test_stop_scanner_across_chunk_borders() -> None:
    """A stop sequence split over two chunks is still found."""
    scanner = StopScanner(["END", "\n\n"])
    sent_text = [scanner.feed(piece) for piece in ("abc E", "N", "D tail", "more")]
    assert sent_text == ["abc", " ", "", ""]
    assert scanner.stopped is True
    plain = StopScanner(["\n\n"])
    assert plain.feed("no stop here") + plain.flush() == "no stop here"


def test_stream_plain_and_tool_call(emulator: RunningEmulator, adapter: GigaChatProvider) -> None:
    """Streams: role first, usage on the finish chunk, a call whole in one delta."""
    stream = adapter.stream(ChatRequest(model="GigaChat-2-Max", messages=[user("one two")]))
    chunks = list(stream)
    stream.close()
    assert stream.model_version == "2.0.28.2"
    assert chunks[0].role == "assistant"
    assert "".join(c.content or "" for c in chunks) == "Ответ: Echo: one two"
    assert [c.usage is not None for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert sent(emulator)["headers"]["accept"] == "text/event-stream"

    tool_stream = adapter.stream(
        ChatRequest(
            model="GigaChat-2-Max",
            messages=[user("weather in Tver")],
            tools=[WEATHER_TOOL],
        )
    )
    (chunk,) = list(tool_stream)
    assert chunk.finish_reason == FinishReason.TOOL_CALLS
    (delta,) = chunk.tool_calls
    assert delta.id is not None and delta.id.startswith("call_")
    assert (delta.name, orjson.loads(delta.arguments)) == (
        "weather_forecast",
        {"location": "Tver", "num_days": 1},
    )


def test_blacklist_is_content_filter(emulator: RunningEmulator, adapter: GigaChatProvider) -> None:
    """finish_reason blacklist maps to content_filter, canned text kept."""
    emulator.control.set_config(finish_reason="blacklist")
    result = adapter.chat(ChatRequest(model="GigaChat-2", messages=[user("forbidden topic")]))
    assert result.choices[0].finish_reason == FinishReason.CONTENT_FILTER
    assert result.choices[0].message.text().startswith("Не люблю менять тему")
    chunks = list(
        adapter.stream(ChatRequest(model="GigaChat-2", messages=[user("forbidden topic")]))
    )
    assert chunks[-1].finish_reason == FinishReason.CONTENT_FILTER


def test_recorded_responses_parse() -> None:
    """Recorded real payloads (fixtures) map to the expected OpenAI fields."""
    from providers.gigachat.mapping import ChatPlan

    data = orjson.loads((FIXTURES / "function_call_response.json").read_bytes())
    choice = GigaChatProvider._choice(data["choices"][0], ChatPlan())
    assert choice.finish_reason == FinishReason.TOOL_CALLS
    assert choice.message.tool_calls[0].id == "call_0199e210-2f13-744c-8fe5-c9a19fe27db7"
    assert orjson.loads(choice.message.tool_calls[0].arguments) == {
        "location": "Manzherok",
        "num_days": 10,
    }
    assert tool_call_id("f", {"b": 1, "a": 2}, None) == tool_call_id("f", {"a": 2, "b": 1}, None)
    assert function_result("") == "{}"
    assert function_result("[1, 2]") == '{"result":[1,2]}'


def test_embeddings_models_and_token_count(
    emulator: RunningEmulator, adapter: GigaChatProvider
) -> None:
    """Embeddings sum per-item usage; models and tokens/count are read."""
    result = adapter.embed(EmbeddingRequest(model="Embeddings", inputs=["a b", "c d e"]))
    assert [len(v) for v in result.vectors] == [1024, 1024]
    assert result.usage.prompt_tokens == 5
    assert {"GigaChat-2-Max", "Embeddings"} <= {m.id for m in adapter.list_models()}
    assert adapter.count_tokens("GigaChat-2", ["a b c", "d"]) == [3, 1]
    with pytest.raises(ProviderError, match="fixed size"):
        adapter.embed(EmbeddingRequest(model="Embeddings", inputs=["x"], dimensions=8))
    assert emulator.control.stats()["token_requests"] == 1


# ---- tokens ------------------------------------------------------------------


def test_expires_at_unit_is_read_by_magnitude() -> None:
    """13 digits are milliseconds, 10 digits seconds."""
    assert expires_at_seconds(1768998570000) == 1768998570.0
    assert expires_at_seconds(1768998570) == 1768998570.0


def test_token_is_cached_and_refreshed_ahead_of_expiry(
    emulator: RunningEmulator, adapter: GigaChatProvider
) -> None:
    """One token serves many calls; 60 s before expiry a new one is fetched."""
    request = ChatRequest(model="GigaChat-2", messages=[user("hi")])
    with time_machine.travel(time.time(), tick=True) as traveller:
        for _ in range(3):
            adapter.chat(request)
        assert emulator.control.stats()["token_requests"] == 1
        traveller.shift(timedelta(seconds=1800 - 90))
        adapter.chat(request)
        assert emulator.control.stats()["token_requests"] == 1
        traveller.shift(timedelta(seconds=45))  # now 45 s before expiry
        adapter.chat(request)
        assert emulator.control.stats()["token_requests"] == 2


def test_401_refreshes_once(emulator: RunningEmulator, adapter: GigaChatProvider) -> None:
    """A token the API rejects is replaced once and the call succeeds."""
    request = ChatRequest(model="GigaChat-2", messages=[user("hi")])
    adapter.chat(request)
    emulator.control._call("POST", "/_emulator/gigachat/expire_tokens", {})
    assert adapter.chat(request).choices[0].message.content == "Ответ: Echo: hi"
    stats = emulator.control.stats()
    assert (stats["token_requests"], stats["auth_failures"]) == (2, 1)


def test_second_401_fails(emulator: RunningEmulator, adapter: GigaChatProvider) -> None:
    """If the fresh token is refused too, the call fails without a third try."""
    request = ChatRequest(model="GigaChat-2", messages=[user("hi")])
    adapter.chat(request)
    emulator.control._call("POST", "/_emulator/gigachat/expire_tokens", {})
    # New tokens are dead on arrival: the retry gets a 401 as well.
    emulator.control.set_config(token_ttl_s=0.001)
    with pytest.raises(ProviderError) as caught:
        adapter.chat(request)
    error = caught.value
    assert (error.code, error.retryable, error.status, error.upstream_status) == (
        "upstream_auth_failed",
        False,
        502,
        401,
    )
    stats = emulator.control.stats()
    assert (stats["token_requests"], stats["auth_failures"]) == (2, 2)


def test_wrong_key_fails_and_is_remembered(
    emulator: RunningEmulator, make_adapter: Callable[..., GigaChatProvider]
) -> None:
    """A rejected key is a non-retryable 502 and is not retried for a while."""
    adapter = make_adapter(credential=base64.b64encode(b"wrong:key").decode())
    request = ChatRequest(model="GigaChat-2", messages=[user("hi")])
    for _ in range(3):
        with pytest.raises(ProviderError, match="rejected the gateway's credentials") as caught:
            adapter.chat(request)
        assert (caught.value.retryable, caught.value.status) == (False, 502)
    assert emulator.control.stats()["token_requests"] == 1


def test_single_flight_across_workers_and_threads(
    emulator: RunningEmulator, make_adapter: Callable[..., GigaChatProvider]
) -> None:
    """24 concurrent first calls from 3 "workers" cause exactly one token request.

    Each adapter instance has its own lock and connection pool, like a
    gunicorn worker; they share only the Django cache (Redis in this run).
    """
    emulator.control.set_config(latency_ms=150)
    workers = [make_adapter() for _ in range(3)]
    request = ChatRequest(model="GigaChat-2", messages=[user("hi")])
    barrier = threading.Barrier(24)
    errors: list[BaseException] = []

    def call(adapter: GigaChatProvider) -> None:
        barrier.wait()
        try:
            adapter.chat(request)
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(workers[i % 3],)) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []
    stats = emulator.control.stats()
    assert stats["token_requests"] == 1
    assert stats["requests_by_path"]["/api/v1/chat/completions"] == 24


def test_misconfiguration_is_reported_per_call(
    make_adapter: Callable[..., GigaChatProvider], tmp_path: Path
) -> None:
    """A missing CA bundle or unknown scope fails calls, never silently."""
    adapter = make_adapter(ca_bundle=str(tmp_path / "missing.pem"))
    with pytest.raises(ProviderError, match="misconfigured") as caught:
        adapter.list_models()
    assert caught.value.code == "upstream_misconfigured"
    with pytest.raises(ProviderError, match="misconfigured"):
        make_adapter(scope="GIGACHAT_API_ALL").list_models()
    with pytest.raises(ProviderError, match="misconfigured"):
        make_adapter(ca_bundle=False).list_models()


# ---- faults -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "retryable", "code"),
    [
        ("http_429", 429, True, "upstream_rate_limited"),
        ("http_500", 502, True, "upstream_error"),
        ("http_503", 503, True, "upstream_unavailable"),
        ("http_413", 413, False, "request_too_large"),
        ("http_422", 400, False, "invalid_request"),
        ("http_402", 502, True, "upstream_payment_required"),
        ("http_400", 400, False, "invalid_request"),
        ("malformed", 502, True, "upstream_bad_response"),
    ],
)
def test_fault_maps_to_provider_error(
    emulator: RunningEmulator,
    adapter: GigaChatProvider,
    fault: str,
    status: int,
    retryable: bool,
    code: str,
) -> None:
    """Every upstream failure becomes a ProviderError with the right flag."""
    request = ChatRequest(model="GigaChat-2", messages=[user("hi")])
    adapter.chat(request)  # the token is cached, so the fault hits the API
    emulator.control.set_config(fault=fault, fault_count=1)
    with pytest.raises(ProviderError) as caught:
        adapter.chat(request)
    error = caught.value
    assert (error.status, error.retryable, error.code) == (status, retryable, code)
    if fault == "http_429":
        assert error.retry_after == 1.0
    assert "eyJ" not in error.message


def test_cut_body_is_a_502(emulator: RunningEmulator, adapter: GigaChatProvider) -> None:
    """A non-stream body cut half-way is a 502 ProviderError, not a crash."""
    request = ChatRequest(model="GigaChat-2", messages=[user("hi")])
    adapter.chat(request)
    emulator.control.set_config(fault="cut", fault_count=1)
    with pytest.raises(ProviderError) as caught:
        adapter.chat(request)
    assert caught.value.status == 502


def test_cut_stream_is_retryable_error(
    emulator: RunningEmulator, adapter: GigaChatProvider
) -> None:
    """A stream that breaks off raises a retryable ProviderError from the iterator."""
    adapter.count_tokens("GigaChat-2", ["warm"])
    emulator.control.set_config(fault="cut", fault_count=1)
    stream = adapter.stream(
        ChatRequest(model="GigaChat-2", messages=[user("a b c d e f g h")], stream=True)
    )
    with pytest.raises(ProviderError) as caught:
        list(stream)
    stream.close()
    assert caught.value.retryable is True
    assert caught.value.code in ("upstream_stream_cut", "upstream_unreachable")


# ---- v2 contract -------------------------------------------------------------

V2_PATH = "/api/v2/chat/completions"


@pytest.fixture
def adapter_v2(make_adapter: Callable[..., GigaChatProvider]) -> GigaChatProvider:
    return make_adapter(contract="v2")


def test_v2_plain_chat_maps_parts_options_and_usage(
    emulator: RunningEmulator, adapter_v2: GigaChatProvider
) -> None:
    result = adapter_v2.chat(
        ChatRequest(
            model="GigaChat-3-Ultra",
            messages=[Message(role="system", content="Be brief."), user("one two three")],
            temperature=0,
            max_tokens=40,
            extra={"reasoning_effort": "high", "profanity_check": False, "session_id": "v2-s"},
        )
    )
    body = sent(emulator, V2_PATH)["json"]
    assert body["messages"] == [
        {"role": "system", "content": [{"text": "Be brief."}]},
        {"role": "user", "content": [{"text": "one two three"}]},
    ]
    assert body["model_options"] == {
        "temperature": 0.001,
        "max_tokens": 40,
        "reasoning": {"effort": "high"},
    }
    assert body["disable_filter"] is True
    assert "tools" not in body
    assert result.choices[0].message.content == "Ответ: Echo: one two three"
    assert result.model_version == "2.0.28.2"
    # The same session again: the cached part is inside prompt_tokens, unbilled.
    again = adapter_v2.chat(
        ChatRequest(
            model="GigaChat-3-Ultra",
            messages=[Message(role="system", content="Be brief."), user("one two three")],
            extra={"session_id": "v2-s"},
        )
    ).usage
    assert again.cached_tokens > 0
    assert again.cached_tokens <= again.prompt_tokens
    assert again.billed_prompt_tokens == again.prompt_tokens - again.cached_tokens


def test_v2_parallel_tool_calls_carry_the_state_id_in_their_ids(
    emulator: RunningEmulator, adapter_v2: GigaChatProvider
) -> None:
    question = user("What is the weather in Omsk and in Sochi?")
    first = adapter_v2.chat(
        ChatRequest(model="GigaChat-3-Ultra", messages=[question], tools=[WEATHER_TOOL])
    )
    choice = first.choices[0]
    assert choice.finish_reason == FinishReason.TOOL_CALLS
    assert [orjson.loads(c.arguments)["location"] for c in choice.message.tool_calls] == [
        "Omsk",
        "Sochi",
    ]
    ids = [c.id for c in choice.message.tool_calls]
    state = sent(emulator, V2_PATH)  # the request; the answer's state id is in the ids
    assert state["json"]["tool_config"] == {"mode": "auto"}
    assert ids[0].endswith("_0") and ids[1].endswith("_1")
    state_id = ids[0][len("call_") : -len("_0")]
    assert ids[1] == f"call_{state_id}_1"

    follow = adapter_v2.chat(
        ChatRequest(
            model="GigaChat-3-Ultra",
            messages=[
                question,
                Message(role="assistant", tool_calls=choice.message.tool_calls),
                Message(role="tool", tool_call_id=ids[1], content='{"t": 25}'),
                Message(role="tool", tool_call_id=ids[0], content="-3"),
            ],
            tools=[WEATHER_TOOL],
        )
    )
    history = sent(emulator, V2_PATH)["json"]["messages"]
    assert history[1]["tools_state_id"] == state_id
    assert [part["function_call"]["arguments"] for part in history[1]["content"]] == [
        {"location": "Omsk", "num_days": 1},
        {"location": "Sochi", "num_days": 1},
    ]
    assert history[2] == {
        "role": "tool",
        "content": [{"function_result": {"name": "weather_forecast", "result": {"t": 25}}}],
        "tools_state_id": state_id,
    }
    assert history[3]["content"][0]["function_result"]["result"] == {"result": -3}
    assert follow.choices[0].message.content == ('Ответ: Function result: {"t":25} {"result":-3}')


def test_v2_without_the_state_id_the_emulator_refuses_like_gigachat(
    adapter_v2: GigaChatProvider,
) -> None:
    call = ToolCall(id="call_from_elsewhere", name="weather_forecast", arguments="{}")
    with pytest.raises(ProviderError) as caught:
        adapter_v2.chat(
            ChatRequest(
                model="GigaChat-3-Ultra",
                messages=[
                    user("weather in Omsk"),
                    Message(role="assistant", tool_calls=[call]),
                    Message(role="tool", tool_call_id=call.id, content="{}"),
                ],
                tools=[WEATHER_TOOL],
            )
        )
    assert caught.value.status == 400


def test_v2_tool_choice_required_and_named(
    emulator: RunningEmulator, adapter_v2: GigaChatProvider
) -> None:
    request = ChatRequest(model="GigaChat-3-Ultra", messages=[user("hello")], tools=[WEATHER_TOOL])
    request.tool_choice = "required"
    assert adapter_v2.chat(request).choices[0].finish_reason == FinishReason.TOOL_CALLS
    assert sent(emulator, V2_PATH)["json"]["tool_config"] == {"mode": "any"}
    request.tool_choice = {"type": "function", "function": {"name": "weather_forecast"}}
    assert adapter_v2.chat(request).choices[0].message.tool_calls
    assert sent(emulator, V2_PATH)["json"]["tool_config"] == {
        "mode": "forced",
        "function_name": "weather_forecast",
    }
    request.tool_choice = "none"
    assert adapter_v2.chat(request).choices[0].message.tool_calls == []
    assert "tools" not in sent(emulator, V2_PATH)["json"]
    request.tool_choice = "required"
    request.parallel_tool_calls = False
    request.messages = [user("weather in Omsk and in Sochi")]
    assert len(adapter_v2.chat(request).choices[0].message.tool_calls) == 1


def test_v2_streams_text_and_parallel_calls(
    emulator: RunningEmulator, adapter_v2: GigaChatProvider
) -> None:
    stream = adapter_v2.stream(ChatRequest(model="GigaChat-3-Ultra", messages=[user("one two")]))
    chunks = list(stream)
    stream.close()
    assert stream.model_version == "2.0.28.2"
    assert chunks[0].role == "assistant"
    assert "".join(c.content or "" for c in chunks) == "Ответ: Echo: one two"
    assert chunks[-1].finish_reason == FinishReason.STOP and chunks[-1].usage is not None
    assert sent(emulator, V2_PATH)["json"]["stream"] is True

    calls = list(
        adapter_v2.stream(
            ChatRequest(
                model="GigaChat-3-Ultra",
                messages=[user("weather in Omsk and in Sochi")],
                tools=[WEATHER_TOOL],
            )
        )
    )
    deltas = [d for c in calls for d in c.tool_calls]
    assert [(d.index, d.name) for d in deltas] == [(0, "weather_forecast"), (1, "weather_forecast")]
    assert calls[-1].finish_reason == FinishReason.TOOL_CALLS


def test_v2_stream_without_the_done_event_is_cut(
    emulator: RunningEmulator, adapter_v2: GigaChatProvider
) -> None:
    emulator.control.set_config(fault="cut")
    with pytest.raises(ProviderError) as caught:
        list(adapter_v2.stream(ChatRequest(model="GigaChat-3-Ultra", messages=[user("a b c")])))
    assert caught.value.retryable is True


def test_v2_native_json_schema(emulator: RunningEmulator, adapter_v2: GigaChatProvider) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    result = adapter_v2.chat(
        ChatRequest(
            model="GigaChat-3-Ultra",
            messages=[user("where in Kazan")],
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        )
    )
    assert sent(emulator, V2_PATH)["json"]["model_options"]["response_format"] == {
        "type": "json_schema",
        "schema": schema,
        "strict": True,
    }
    assert orjson.loads(result.choices[0].message.content or "") == {"city": "Kazan"}
