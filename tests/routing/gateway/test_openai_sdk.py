"""The official ``openai`` SDK against the gateway, served by ``live_server``
in front of the OpenAI-compatible emulator."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.conftest import LiveGateway


def test_chat_completion(gateway: LiveGateway, upstream_control: Any) -> None:
    completion = gateway.client().chat.completions.create(
        model="local/mock", messages=[{"role": "user", "content": "Привет, мир"}]
    )
    assert completion.model == "local/mock"
    assert completion.choices[0].message.content == "Ответ: Echo: Привет, мир"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    sent = upstream_control.stats()["last_request"]
    # The upstream sees its own model name and the catalog's credential.
    assert sent["json"]["model"] == "gpt-mock"
    assert sent["headers"]["authorization"] == "Bearer upstream-secret-for-tests"


def test_chat_completion_headers(gateway: LiveGateway) -> None:
    raw = gateway.client().chat.completions.with_raw_response.create(
        model="local/mock",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"X-Request-ID": "trace-123"},
    )
    assert raw.headers["x-request-id"] == "trace-123"
    assert raw.headers["x-xrouter-provider"] == "local"
    assert raw.headers["x-xrouter-model"] == "local/mock"


def test_streaming_with_usage(gateway: LiveGateway, upstream_control: Any) -> None:
    stream = gateway.client().chat.completions.create(
        model="local/mock",
        messages=[{"role": "user", "content": "Сколько будет 2+2?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Ответ: Echo: Сколько будет 2+2?"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    # Usage is always requested upstream, for billing.
    assert upstream_control.stats()["last_request"]["json"]["stream_options"] == {
        "include_usage": True
    }


def test_streaming_without_usage_sends_no_usage_chunk(gateway: LiveGateway) -> None:
    chunks = list(
        gateway.client().chat.completions.create(
            model="local/mock", messages=[{"role": "user", "content": "x"}], stream=True
        )
    )
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


def test_tool_call_round_trip(gateway: LiveGateway) -> None:
    client = gateway.client()
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Moscow?"}]
    first = client.chat.completions.create(model="local/mock", messages=messages, tools=tools)
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "-3°C, snow"},
    ]
    second = client.chat.completions.create(model="local/mock", messages=messages, tools=tools)
    assert "-3°C, snow" in second.choices[0].message.content


def test_embeddings_float_and_base64(gateway: LiveGateway) -> None:
    client = gateway.client()
    default = client.embeddings.create(model="local/embed", input=["один", "два"])
    floats = client.embeddings.create(
        model="local/embed", input=["один", "два"], encoding_format="float"
    )
    assert len(default.data) == 2
    assert [round(x, 5) for x in default.data[0].embedding] == [
        round(x, 5) for x in floats.data[0].embedding
    ]
    assert default.data[0].embedding != default.data[1].embedding
    assert default.model == "local/embed"


def test_models_list_and_retrieve(gateway: LiveGateway) -> None:
    client = gateway.client()
    ids = [m.id for m in client.models.list()]
    assert ids == ["local/embed", "local/mock", "xrouter/auto", "xrouter/cheap"]
    assert client.models.retrieve("local/mock").id == "local/mock"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("local/nope")


def test_invalid_key_is_authentication_error(gateway: LiveGateway) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="xr_live_nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(
            model="local/mock", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.code == "invalid_api_key"


def test_bad_parameter_is_bad_request(gateway: LiveGateway) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        gateway.client().chat.completions.create(
            model="local/mock", messages=[{"role": "user", "content": "x"}], temperature=5
        )
    assert info.value.param == "temperature"


def test_unknown_model_is_not_found(gateway: LiveGateway) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        gateway.client().chat.completions.create(
            model="nobody/model", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.code == "model_not_found"


def test_model_outside_the_key_allowlist_is_permission_denied(
    gateway: LiveGateway, make_key: Any
) -> None:
    limited = make_key(allowed_models=["local/embed"])
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=limited.plaintext, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as info:
        client.chat.completions.create(
            model="local/mock", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.code == "model_not_allowed"
    assert [m.id for m in client.models.list()] == ["local/embed"]


@pytest.mark.parametrize(
    ("fault", "exception", "status"),
    [
        ("http_429", openai.RateLimitError, 429),
        ("http_500", openai.InternalServerError, 502),
        ("http_503", openai.InternalServerError, 503),
        ("http_400", openai.BadRequestError, 400),
        ("http_401", openai.InternalServerError, 502),
        ("malformed", openai.InternalServerError, 502),
        ("timeout", openai.InternalServerError, 504),
        ("cut", openai.InternalServerError, 502),
    ],
)
def test_upstream_faults_map_to_sdk_errors(
    gateway: LiveGateway,
    upstream_control: Any,
    settings: Any,
    fault: str,
    exception: type[Exception],
    status: int,
) -> None:
    from routing.table import reset_table

    settings.XROUTER_UPSTREAM_READ_TIMEOUT = 1.0
    reset_table()
    upstream_control.set_config(fault=fault)
    with pytest.raises(exception) as info:
        gateway.client().chat.completions.create(
            model="local/mock", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == status  # type: ignore[attr-defined]
    body = info.value.body  # type: ignore[attr-defined]
    assert set(body) == {"message", "type", "param", "code"}
    if fault == "http_429":
        assert info.value.response.headers["retry-after"] == "1"  # type: ignore[attr-defined]


def test_upstream_error_before_the_first_chunk_is_an_http_error(
    gateway: LiveGateway, upstream_control: Any
) -> None:
    upstream_control.set_config(fault="http_503")
    with pytest.raises(openai.InternalServerError) as info:
        list(
            gateway.client().chat.completions.create(
                model="local/mock", messages=[{"role": "user", "content": "x"}], stream=True
            )
        )
    assert info.value.status_code == 503


def test_stream_cut_by_upstream_ends_with_an_error_event(
    gateway: LiveGateway, upstream_control: Any
) -> None:
    upstream_control.set_config(fault="cut", stream_tokens=20)
    stream = gateway.client().chat.completions.create(
        model="local/mock", messages=[{"role": "user", "content": "x"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            received.append(chunk)
    assert received, "the client saw the chunks sent before the cut"
    assert "broke off" in str(info.value) or "before it was complete" in str(info.value)
