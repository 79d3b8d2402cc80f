"""The official ``gigachat`` SDK against the GigaChat emulator.

If Sber's own client library authenticates, chats, streams, lists models,
embeds, counts tokens and retries a 401 against the emulator, the emulator
speaks the real wire format, and the adapter's tests against it mean
something. The raw-HTTP tests pin the details the SDK does not check (OAuth
error bodies, the millisecond ``expires_at``, the OAuth rate limit).
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator

import gigachat.exceptions
import pytest
import requests
from gigachat import GigaChat

from providers.emulators.testing import RunningEmulator, start_emulator

CREDENTIALS = base64.b64encode(b"client-id:client-secret").decode()


@pytest.fixture(scope="module")
def emulator_process() -> Iterator[RunningEmulator]:
    """One GigaChat emulator per module: fast streams, the one valid key."""
    emulator = start_emulator(
        "gigachat", stream_tokens=4, chunk_interval_ms=5, credentials=CREDENTIALS
    )
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def emulator(emulator_process: RunningEmulator) -> RunningEmulator:
    emulator_process.control.reset()
    return emulator_process


def sdk(emulator: RunningEmulator, **kwargs: object) -> GigaChat:
    options: dict[str, object] = {
        "base_url": emulator.url("/api/v1"),
        "auth_url": emulator.url("/api/v2/oauth"),
        "credentials": CREDENTIALS,
        "scope": "GIGACHAT_API_PERS",
        "model": "GigaChat-2-Max",
        "timeout": 10.0,
    }
    options.update(kwargs)
    return GigaChat(**options)  # type: ignore[arg-type]


def test_sdk_authenticates_and_chats(emulator: RunningEmulator) -> None:
    """The SDK fetches a token once and gets a v1 completion with a version."""
    with sdk(emulator) as client:
        first = client.chat("Привет, как дела?")
        second = client.chat("second call")
        token = client.get_token()
    assert first.model == "GigaChat-2-Max:2.0.28.2"
    assert first.choices[0].message.content == "Ответ: Echo: Привет, как дела?"
    assert first.choices[0].finish_reason == "stop"
    assert first.usage.prompt_tokens == 4
    assert first.usage.completion_tokens == 5
    assert first.usage.precached_prompt_tokens == 0
    assert first.x_headers is not None and first.x_headers["x-request-id"]
    assert second.choices[0].message.content == "Ответ: Echo: second call"
    # expires_at is epoch milliseconds, 30 minutes ahead.
    assert token is not None
    assert abs(token.expires_at - (time.time() * 1000 + 1_800_000)) < 10_000
    assert emulator.control.stats()["token_requests"] == 1


def test_sdk_streams(emulator: RunningEmulator) -> None:
    """Streams are v1 SSE: role first, usage only on the finishing chunk."""
    with sdk(emulator) as client:
        chunks = list(client.stream("one two three"))
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text == "Ответ: Echo: one two three"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.usage is not None for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].object_ == "chat.completion"
    assert emulator.control.stats()["streams_completed"] == 1


def test_sdk_function_call(emulator: RunningEmulator) -> None:
    """A function call comes back as an object, with a functions_state_id."""
    payload = {
        "messages": [{"role": "user", "content": "What is the weather in Manzherok?"}],
        "functions": [
            {
                "name": "weather_forecast",
                "description": "Forecast",
                "parameters": {
                    "type": "object",
                    "properties": {"location": {"type": "string"}, "num_days": {"type": "integer"}},
                    "required": ["location"],
                },
            }
        ],
        "function_call": "auto",
    }
    with sdk(emulator) as client:
        result = client.chat(payload)
    message = result.choices[0].message
    assert result.choices[0].finish_reason == "function_call"
    assert message.function_call is not None
    assert message.function_call.name == "weather_forecast"
    assert message.function_call.arguments == {"location": "Manzherok", "num_days": 1}
    assert uuid.UUID(message.functions_state_id or "")


def test_sdk_models_embeddings_tokens_balance(emulator: RunningEmulator) -> None:
    """Models, one model, embeddings (1024-d, per-item usage), tokens, balance."""
    with sdk(emulator) as client:
        models = client.get_models()
        model = client.get_model("GigaChat-2-Pro")
        embeddings = client.embeddings(["первый текст", "second text here"])
        counts = client.tokens_count(["a b c", "д е"])
        balance = client.get_balance()
        with pytest.raises(gigachat.exceptions.NotFoundError):
            client.get_model("GigaChat-9")
    ids = [m.id_ for m in models.data]
    assert {"GigaChat-2", "GigaChat-2-Pro", "GigaChat-2-Max", "Embeddings"} <= set(ids)
    assert model.owned_by == "salutedevices"
    assert [len(e.embedding) for e in embeddings.data] == [1024, 1024]
    assert [e.usage.prompt_tokens for e in embeddings.data] == [2, 3]
    assert [(c.tokens, c.characters) for c in counts] == [(3, 5), (2, 3)]
    assert balance.balance[0].usage == "GigaChat"


def test_sdk_retries_once_after_401(emulator: RunningEmulator) -> None:
    """A 401 on a cached token makes the SDK re-authenticate and retry once."""
    with sdk(emulator) as client:
        client.chat("warm up")
        expired = emulator.control._call("POST", "/_emulator/gigachat/expire_tokens", {})
        assert expired["expired"] >= 1
        result = client.chat("after expiry")
    assert result.choices[0].message.content == "Ответ: Echo: after expiry"
    stats = emulator.control.stats()
    assert stats["token_requests"] == 2
    assert stats["auth_failures"] == 1
    assert stats["requests_by_path"]["/api/v1/chat/completions"] == 3


def test_sdk_sees_rate_limit_and_errors(emulator: RunningEmulator) -> None:
    """429 carries Retry-After; 5xx, 413 and 422 map to the SDK's classes."""
    with sdk(emulator) as client:
        client.chat("warm up")
        cases = {
            "http_429": gigachat.exceptions.RateLimitError,
            "http_500": gigachat.exceptions.ServerError,
            "http_413": gigachat.exceptions.RequestEntityTooLargeError,
            "http_422": gigachat.exceptions.UnprocessableEntityError,
        }
        for fault, error_class in cases.items():
            emulator.control.set_config(fault=fault, fault_count=1)
            with pytest.raises(error_class) as caught:
                client.chat("faulty")
            if fault == "http_429":
                assert caught.value.retry_after == 1.0  # type: ignore[attr-defined]
        with pytest.raises(gigachat.exceptions.UnprocessableEntityError, match="system message"):
            client.chat(
                {
                    "messages": [
                        {"role": "user", "content": "hi"},
                        {"role": "system", "content": "late"},
                    ]
                }
            )


def test_sdk_wrong_key_fails_auth(emulator: RunningEmulator) -> None:
    """A key the OAuth host does not know is a 401 with code 6."""
    wrong = base64.b64encode(b"someone:else").decode()
    with sdk(emulator, credentials=wrong) as client:
        with pytest.raises(gigachat.exceptions.AuthenticationError) as caught:
            client.chat("hi")
    assert caught.value.content == b'{"code":6,"message":"credentials doesn\'t match db data"}'


def oauth(emulator: RunningEmulator, **overrides: object) -> requests.Response:
    headers = {"Authorization": f"Basic {CREDENTIALS}", "RqUID": str(uuid.uuid4())}
    data: dict[str, str] = {"scope": "GIGACHAT_API_PERS"}
    for key, value in overrides.items():
        if key == "data":
            data = value  # type: ignore[assignment]
        elif value is None:
            headers.pop(key, None)
        else:
            headers[key] = str(value)
    return requests.post(emulator.url("/api/v2/oauth"), headers=headers, data=data, timeout=5)


def test_oauth_wire_format(emulator: RunningEmulator) -> None:
    """Tokens carry a 13-digit ms expiry; errors use the {code, message} shape."""
    response = oauth(emulator)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "expires_at"}
    assert len(str(body["expires_at"])) == 13

    assert oauth(emulator, RqUID=None).status_code == 400
    assert oauth(emulator, RqUID="not-a-uuid").status_code == 400
    empty = oauth(emulator, data={})
    assert (empty.status_code, empty.json()) == (400, {"code": 5, "message": "scope is empty"})
    bad_scope = oauth(emulator, data={"scope": "GIGACHAT_API_NOPE"})
    assert bad_scope.json()["code"] == 3
    emulator.control.set_config(scope="GIGACHAT_API_CORP")
    other_scope = oauth(emulator)
    assert other_scope.status_code == 400
    assert other_scope.json()["code"] == 7
    assert emulator.control.stats()["token_requests"] == 6


def test_oauth_rate_limit(emulator: RunningEmulator) -> None:
    """More than oauth_rps token requests in a second are refused with 429."""
    emulator.control.set_config(oauth_rps=3)
    statuses = [oauth(emulator).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    assert emulator.control.stats()["oauth_rate_limited"] == 2


def test_api_rejects_unknown_and_expired_tokens(emulator: RunningEmulator) -> None:
    """401 bodies are {status, message}; an expired token says so."""
    url = emulator.url("/api/v1/models")
    unknown = requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=5)
    assert (unknown.status_code, unknown.json()) == (
        401,
        {"status": 401, "message": "Unauthorized"},
    )
    emulator.control.set_config(token_ttl_s=0.2)
    token = oauth(emulator).json()["access_token"]
    assert requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5).ok
    time.sleep(0.3)  # the token's 0.2 s TTL running out is what is under test
    expired = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert expired.json() == {"status": 401, "message": "Token has expired"}


def test_concurrency_cap_answers_429(emulator: RunningEmulator) -> None:
    """With max_concurrent=1 (the personal tier) a second parallel chat gets 429."""
    from concurrent.futures import ThreadPoolExecutor

    token = oauth(emulator).json()["access_token"]
    emulator.control.set_config(max_concurrent=1, latency_ms=300)

    def chat(_: int) -> int:
        return requests.post(
            emulator.url("/api/v1/chat/completions"),
            headers={"Authorization": f"Bearer {token}"},
            json={"model": "GigaChat-2", "messages": [{"role": "user", "content": "hi"}]},
            timeout=5,
        ).status_code

    with ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(chat, range(2)))
    assert statuses == [200, 429]
    assert emulator.control.stats()["in_flight"] == 0


# ---- the SDK's v2 resource methods (client.chat.create / .stream) -------------------

V2_TOOLS = [
    {
        "functions": {
            "specifications": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city.",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                }
            ]
        }
    }
]


def test_sdk_v2_create_and_usage(emulator: RunningEmulator) -> None:
    with sdk(emulator, model="GigaChat-3-Ultra") as client:
        answer = client.chat.create({"messages": [{"role": "user", "content": "Count to 3"}]})
    assert answer.model == "GigaChat-3-Ultra:2.0.28.2"
    assert answer.finish_reason == "stop"
    assert answer.messages[0].role == "assistant"
    assert answer.messages[0].content is not None
    assert answer.messages[0].content[0].text == "Ответ: Echo: Count to 3"
    assert answer.usage is not None and answer.usage.input_tokens_details is not None
    assert answer.usage.input_tokens_details.cached_tokens == 0
    assert (answer.usage.input_tokens, answer.usage.output_tokens) == (4, 5)
    assert answer.usage.total_tokens == 9
    sent = emulator.control.stats()["last_request"]
    assert sent["path"] == "/api/v2/chat/completions"
    assert sent["json"]["messages"] == [{"role": "user", "content": [{"text": "Count to 3"}]}]


def test_sdk_v2_stream_has_named_events_and_no_done(emulator: RunningEmulator) -> None:
    with sdk(emulator, model="GigaChat-3-Ultra") as client:
        chunks = list(client.chat.stream({"messages": [{"role": "user", "content": "a b c d"}]}))
    assert {c.event for c in chunks[:-1]} == {"response.message.delta"}
    assert chunks[-1].event == "response.message.done"
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage is not None
    text = "".join(
        part.text or "" for c in chunks for m in c.messages or [] for part in m.content or []
    )
    assert text == "Ответ: Echo: a b c d"


def test_sdk_v2_function_round_trip_echoes_the_state_id(emulator: RunningEmulator) -> None:
    question = {"role": "user", "content": "weather in Omsk and in Sochi"}
    with sdk(emulator, model="GigaChat-3-Ultra") as client:
        first = client.chat.create({"messages": [question], "tools": V2_TOOLS})
        turn = first.messages[0]
        assert first.finish_reason == "function_call"
        assert turn.tools_state_id  # answers spell it tool_state_id; the SDK reads both
        calls = [part.function_call for part in turn.content or [] if part.function_call]
        assert [c.arguments for c in calls] == [{"city": "Omsk"}, {"city": "Sochi"}]
        results = {
            "role": "tool",
            "tools_state_id": turn.tools_state_id,
            "content": [
                {"function_result": {"name": "get_weather", "result": {"t": n}}} for n in (1, 2)
            ],
        }
        history = [question, turn.model_dump(exclude_none=True, by_alias=True), results]
        second = client.chat.create({"messages": history, "tools": V2_TOOLS})
        assert second.messages[0].content is not None
        assert second.messages[0].content[0].text == 'Ответ: Function result: {"t":1} {"t":2}'
        # Without the state id the emulator refuses, as GigaChat does.
        del results["tools_state_id"]
        with pytest.raises(gigachat.exceptions.UnprocessableEntityError):
            client.chat.create({"messages": history, "tools": V2_TOOLS})
