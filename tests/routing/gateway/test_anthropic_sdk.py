"""``/v1/messages`` with the official ``anthropic`` SDK, unchanged.

The gateway is ``live_server`` in front of the OpenAI-compatible emulator;
the SDK's own parsing (and its exception classes) are what is tested.
"""

from __future__ import annotations

from typing import Any

import anthropic
import pytest
import requests

from tests.conftest import LiveGateway

WEATHER = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def client(gateway: LiveGateway, **kwargs: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, max_retries=0, timeout=10, **kwargs)


def test_message(gateway: LiveGateway, upstream_control: Any) -> None:
    raw = client(gateway, api_key=gateway.key).messages.with_raw_response.create(
        model="local/mock",
        max_tokens=50,
        system="Отвечай кратко.",
        messages=[{"role": "user", "content": [{"type": "text", "text": "Привет, мир"}]}],
        stop_sequences=["STOP"],
    )
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.model == "local/mock"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "Ответ: Echo: Привет, мир"
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 4 and message.usage.input_tokens > 0
    assert raw.headers["x-xrouter-attempts"] == "local:200"
    sent = upstream_control.stats()["last_request"]["json"]
    assert sent["messages"] == [
        {"role": "system", "content": "Отвечай кратко."},
        {"role": "user", "content": "Привет, мир"},
    ]
    assert sent["max_tokens"] == 50 and sent["stop"] == ["STOP"]


def test_bearer_token_authenticates_too(gateway: LiveGateway) -> None:
    message = client(gateway, auth_token=gateway.key).messages.create(
        model="local/mock", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].text == "Ответ: Echo: hi"


def test_streamed_message(gateway: LiveGateway) -> None:
    with client(gateway, api_key=gateway.key).messages.stream(
        model="local/mock",
        max_tokens=50,
        messages=[{"role": "user", "content": "Сколько будет 2+2?"}],
    ) as stream:
        events = [event.type for event in stream]
        message = stream.get_final_message()
    assert events[0] == "message_start"
    assert events[-1] == "message_stop"
    assert "content_block_start" in events and "content_block_stop" in events
    assert message.content[0].type == "text"
    assert message.content[0].text == "Ответ: Echo: Сколько будет 2+2?"
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 5
    assert message.usage.input_tokens > 0


def test_tool_round_trip(gateway: LiveGateway, upstream_control: Any) -> None:
    sdk = client(gateway, api_key=gateway.key)
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Kazan?"}]
    first = sdk.messages.create(
        model="local/mock", max_tokens=100, tools=[WEATHER], messages=messages
    )
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"city": "Kazan"}
    messages += [
        {"role": "assistant", "content": first.content},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny +20"}],
        },
    ]
    second = sdk.messages.create(
        model="local/mock", max_tokens=100, tools=[WEATHER], messages=messages
    )
    assert second.stop_reason == "end_turn"
    assert second.content[0].text == "Ответ: Tool result: Sunny +20"
    sent = upstream_control.stats()["last_request"]["json"]
    assert sent["messages"][1]["tool_calls"][0]["id"] == call.id
    assert sent["messages"][2] == {"role": "tool", "content": "Sunny +20", "tool_call_id": call.id}


def test_streamed_tool_call(gateway: LiveGateway) -> None:
    with client(gateway, api_key=gateway.key).messages.stream(
        model="local/mock",
        max_tokens=100,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "Weather in Sochi please"}],
    ) as stream:
        message = stream.get_final_message()
    call = next(block for block in message.content if block.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"city": "Sochi"}
    assert message.stop_reason == "tool_use"


def test_count_tokens(gateway: LiveGateway) -> None:
    counted = client(gateway, api_key=gateway.key).messages.count_tokens(
        model="local/mock",
        system="Be brief.",
        messages=[{"role": "user", "content": "one two three"}],
    )
    # The OpenAI-compatible upstream has no counter: the gateway's estimate.
    assert counted.input_tokens > 0


def test_errors_are_anthropic_exceptions(gateway: LiveGateway) -> None:
    with pytest.raises(anthropic.AuthenticationError) as auth:
        client(gateway, api_key="xr_live_wrong").messages.create(
            model="local/mock", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert auth.value.body["type"] == "error"
    assert auth.value.body["error"]["type"] == "authentication_error"
    sdk = client(gateway, api_key=gateway.key)
    with pytest.raises(anthropic.NotFoundError) as missing:
        sdk.messages.create(
            model="nobody/none", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert missing.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as bad:
        sdk.messages.create(
            model="local/mock",
            max_tokens=5,
            messages=[{"role": "system", "content": "x"}],  # type: ignore[typeddict-item]
        )
    assert "messages[0].role" in bad.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError) as no_max:
        sdk.post(
            "/v1/messages",
            body={"model": "local/mock", "messages": [{"role": "user", "content": "x"}]},
            cast_to=object,
        )
    assert "max_tokens" in no_max.value.body["error"]["message"]


def test_wrong_method_answers_in_anthropic_dialect(gateway: LiveGateway) -> None:
    response = requests.get(f"{gateway.url}/v1/messages", headers=gateway.headers, timeout=5)
    assert response.status_code == 405
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_upstream_failure_mid_stream_ends_with_an_error_event(
    gateway: LiveGateway, upstream_control: Any
) -> None:
    upstream_control.set_config(fault="cut")
    response = requests.post(
        f"{gateway.url}/v1/messages",
        headers={"x-api-key": gateway.key, "anthropic-version": "2023-06-01"},
        json={
            "model": "local/mock",
            "max_tokens": 50,
            "stream": True,
            "messages": [{"role": "user", "content": "one two three four five six"}],
        },
        timeout=10,
    )
    assert response.status_code == 200
    events = [line for line in response.text.splitlines() if line.startswith("event: ")]
    assert events[0] == "event: message_start"
    assert events[-1] == "event: error"
    assert "event: message_stop" not in events


def test_limits_apply_and_refuse_in_anthropic_dialect(gateway: LiveGateway, make_key: Any) -> None:
    limited = make_key(rpm_limit=1)
    sdk = client(gateway, api_key=limited.plaintext)
    sdk.messages.create(
        model="local/mock", max_tokens=5, messages=[{"role": "user", "content": "one"}]
    )
    with pytest.raises(anthropic.RateLimitError) as caught:
        sdk.messages.create(
            model="local/mock", max_tokens=5, messages=[{"role": "user", "content": "two"}]
        )
    assert caught.value.body["error"]["type"] == "rate_limit_error"
    assert caught.value.response.headers["retry-after"]
