"""``POST /v1/completions`` (legacy text completions) with the official SDK."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from routing.models import UsageRecord
from routing.usage import records as usage
from tests.conftest import LiveGateway


def test_completion(gateway: LiveGateway, upstream_control: Any) -> None:
    raw = gateway.client().completions.with_raw_response.create(
        model="local/mock", prompt="Привет, мир", max_tokens=20, temperature=0.5
    )
    completion = raw.parse()
    assert completion.object == "text_completion"
    assert completion.model == "local/mock"
    assert completion.choices[0].text == "Ответ: Echo: Привет, мир"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 4
    assert raw.headers["x-xrouter-attempts"] == "local:200"
    sent = upstream_control.stats()["last_request"]["json"]
    assert sent["messages"] == [{"role": "user", "content": "Привет, мир"}]
    assert sent["max_tokens"] == 20


def test_completion_stream_with_usage(gateway: LiveGateway) -> None:
    chunks = list(
        gateway.client().completions.create(
            model="local/mock",
            prompt=["Сколько будет 2+2?"],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == "Ответ: Echo: Сколько будет 2+2?"
    assert all(c.object == "text_completion" for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5


def test_completion_is_billed_as_its_own_endpoint(gateway: LiveGateway) -> None:
    gateway.client().completions.create(model="local/mock", prompt="раз два")
    usage.flush_all()
    sink = usage.stream_sink()
    if sink is not None:
        while sink.consume_once(block_ms=10):
            pass
    record = UsageRecord.objects.get()
    assert record.endpoint == "completions"
    assert record.requested_model == "local/mock"
    assert record.completion_tokens > 0 and record.cost_rub > 0


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "x", "echo": True}, "echo"),
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": [1, 2, 3]}, "prompt"),
        ({"prompt": "x", "logprobs": 2}, "logprobs"),
        ({"prompt": "x", "n": 2}, "n"),
        ({"prompt": "x", "provider": {"sort": "cheapest"}}, "provider.sort"),
        ({}, "prompt"),
    ],
)
def test_bad_completion_requests_name_the_parameter(
    gateway: LiveGateway, body: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.client().post("/completions", body={"model": "local/mock", **body}, cast_to=object)
    assert caught.value.body["param"] == param


def test_completion_unknown_model_is_openai_404(gateway: LiveGateway) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        gateway.client().completions.create(model="nope/nothing", prompt="x")
    assert caught.value.body["code"] == "model_not_found"
