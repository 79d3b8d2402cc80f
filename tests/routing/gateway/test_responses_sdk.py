"""``/v1/responses`` with the official ``openai`` SDK, unchanged.

``live_server`` in front of the OpenAI-compatible emulator; the emulator's
``last_request`` shows what the translation sent upstream.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import openai
import pytest
import requests
from django.utils import timezone

from keys.services import CreatedKey, api_key_create
from routing.gateway.surfaces import store
from routing.models import StoredResponse
from tests.conftest import LiveGateway

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def test_create(gateway: LiveGateway, upstream_control: Any) -> None:
    raw = gateway.client().responses.with_raw_response.create(
        model="local/mock",
        instructions="Отвечай кратко.",
        input="Привет, мир",
        max_output_tokens=40,
        reasoning={"effort": "low"},
    )
    response = raw.parse()
    assert response.id.startswith("resp_")
    assert response.object == "response" and response.status == "completed"
    assert response.model == "local/mock"
    assert response.output_text == "Ответ: Echo: Привет, мир"
    assert response.output[0].type == "message"
    assert response.usage is not None
    assert response.usage.output_tokens == 4 and response.usage.input_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + 4
    assert raw.headers["x-xrouter-attempts"] == "local:200"
    sent = upstream_control.stats()["last_request"]["json"]
    assert sent["messages"] == [
        {"role": "system", "content": "Отвечай кратко."},
        {"role": "user", "content": "Привет, мир"},
    ]
    assert sent["max_tokens"] == 40


def test_stream_sends_the_typed_event_sequence(gateway: LiveGateway) -> None:
    events = list(
        gateway.client().responses.create(
            model="local/mock", input="Сколько будет 2+2?", stream=True
        )
    )
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Ответ: Echo: Сколько будет 2+2?"
    completed = events[-1].response
    assert completed.output_text == text
    assert completed.usage is not None and completed.usage.output_tokens == 5


def test_function_tool_round_trip(gateway: LiveGateway, upstream_control: Any) -> None:
    client = gateway.client()
    first = client.responses.create(
        model="local/mock", input="What is the weather in Kazan?", tools=[WEATHER], store=False
    )
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather" and call.arguments == '{"city":"Kazan"}'
    second = client.responses.create(
        model="local/mock",
        tools=[WEATHER],
        input=[
            {"role": "user", "content": "What is the weather in Kazan?"},
            *[item.model_dump(exclude_none=True) for item in first.output],
            {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny +20"},
        ],
    )
    assert second.output_text == "Ответ: Tool result: Sunny +20"
    sent = upstream_control.stats()["last_request"]["json"]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call.call_id
    assert sent[2] == {"role": "tool", "content": "Sunny +20", "tool_call_id": call.call_id}


def test_previous_response_id_continues_the_conversation(
    gateway: LiveGateway, upstream_control: Any
) -> None:
    client = gateway.client()
    first = client.responses.create(
        model="local/mock", input="What is the weather in Omsk?", tools=[WEATHER]
    )
    call = next(item for item in first.output if item.type == "function_call")
    second = client.responses.create(
        model="local/mock",
        previous_response_id=first.id,
        tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Snow"}],
    )
    assert second.previous_response_id == first.id
    assert second.output_text == "Ответ: Tool result: Snow"
    third = client.responses.create(
        model="local/mock", previous_response_id=second.id, input="Спасибо"
    )
    assert third.output_text == "Ответ: Echo: Спасибо"
    sent = upstream_control.stats()["last_request"]["json"]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "assistant", "user"]
    assert sent[3]["content"] == "Ответ: Tool result: Snow"


def test_retrieve_and_delete(gateway: LiveGateway) -> None:
    client = gateway.client()
    created = client.responses.create(model="local/mock", input="keep me")
    fetched = client.responses.retrieve(created.id)
    assert fetched.id == created.id and fetched.output_text == "Ответ: Echo: keep me"
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="local/mock", previous_response_id=created.id, input="again")


def test_store_false_keeps_nothing(gateway: LiveGateway) -> None:
    client = gateway.client()
    created = client.responses.create(model="local/mock", input="forget me", store=False)
    assert created.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    assert not StoredResponse.objects.filter(response_id=created.id).exists()


def test_another_team_sees_nothing_of_our_responses(gateway: LiveGateway, other_team: Any) -> None:
    ours = gateway.client().responses.create(model="local/mock", input="secret")
    theirs: CreatedKey = api_key_create(team=other_team, name="other")
    client = openai.OpenAI(
        base_url=gateway.url + "/v1", api_key=theirs.plaintext, max_retries=0, timeout=10
    )
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(ours.id)
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model="local/mock", previous_response_id=ours.id, input="x")
    assert caught.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(ours.id)
    assert StoredResponse.objects.filter(response_id=ours.id).exists()


def test_stored_responses_expire_after_retention(gateway: LiveGateway, settings: Any) -> None:
    settings.XROUTER_RESPONSES_RETENTION_DAYS = 30
    client = gateway.client()
    old = client.responses.create(model="local/mock", input="old")
    fresh = client.responses.create(model="local/mock", input="fresh")
    StoredResponse.objects.filter(response_id=old.id).update(
        created_at=timezone.now() - timedelta(days=31)
    )
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(old.id)
    assert store.responses_prune() == 1
    assert list(StoredResponse.objects.values_list("response_id", flat=True)) == [fresh.id]


def test_json_schema_format_reaches_the_upstream(
    gateway: LiveGateway, upstream_control: Any
) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    gateway.client().responses.create(
        model="local/mock",
        input="city?",
        text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}},
    )
    sent = upstream_control.stats()["last_request"]["json"]
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "city", "schema": schema, "strict": True},
    }


def test_streamed_function_call(gateway: LiveGateway) -> None:
    events = list(
        gateway.client().responses.create(
            model="local/mock",
            input="Weather in Sochi?",
            tools=[WEATHER],
            tool_choice={"type": "function", "name": "get_weather"},
            stream=True,
        )
    )
    kinds = [event.type for event in events]
    assert "response.function_call_arguments.delta" in kinds
    assert "response.function_call_arguments.done" in kinds
    arguments = "".join(
        e.delta for e in events if e.type == "response.function_call_arguments.delta"
    )
    assert arguments == '{"city":"Sochi"}'
    final = events[-1].response
    assert final.output[-1].type == "function_call"
    assert final.output[-1].arguments == arguments


def test_mid_stream_failure_ends_with_error_and_failed(
    gateway: LiveGateway, upstream_control: Any
) -> None:
    upstream_control.set_config(fault="cut")
    response = requests.post(
        f"{gateway.url}/v1/responses",
        headers=gateway.headers,
        json={"model": "local/mock", "input": "one two three four five six", "stream": True},
        timeout=10,
    )
    assert response.status_code == 200
    events = [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]
    assert events[0] == "response.created"
    assert events[-2:] == ["error", "response.failed"]
    assert "response.completed" not in events


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": 5}, "input"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": "x", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
        ({"input": "x", "reasoning": {"effort": "maximal"}}, "reasoning.effort"),
        ({"input": "x", "background": True}, "background"),
        ({"input": "x", "provider": {"order": ["nobody"]}}, "provider.order[0]"),
        ({}, "input"),
    ],
)
def test_bad_requests_are_openai_400s_naming_the_parameter(
    gateway: LiveGateway, body: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.client().post("/responses", body={"model": "local/mock", **body}, cast_to=object)
    assert caught.value.body["param"] == param


def test_limits_apply_to_responses(gateway: LiveGateway, make_key: Any) -> None:
    limited = make_key(rpm_limit=1)
    client = openai.OpenAI(
        base_url=gateway.url + "/v1", api_key=limited.plaintext, max_retries=0, timeout=10
    )
    client.responses.create(model="local/mock", input="one", store=False)
    with pytest.raises(openai.RateLimitError) as caught:
        client.responses.create(model="local/mock", input="two", store=False)
    assert caught.value.body["code"] == "rate_limit_requests"
