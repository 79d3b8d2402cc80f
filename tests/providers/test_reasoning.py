"""Reasoning out: ``reasoning_content`` and reasoning tokens, in OpenAI's fields.

The shapes the emulators send are the documented ones: GigaChat v1
``message.reasoning_content`` / ``delta.reasoning_content`` (the official
SDK's ``Messages`` and ``MessagesChunk``), GigaChat v2 messages with
``role: "reasoning"`` (the SDK's v2 models, read by gpt2giga), Yandex's
OpenAI surface ``reasoning_content`` (yandex-ai-studio-sdk's chat reader).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from keys.services import CreatedKey
from providers.emulators.testing import RunningEmulator, start_emulator
from tests.providers import test_gigachat_gateway as giga_tests
from tests.providers import test_yandexgpt_gateway as yandex_tests


@pytest.fixture(scope="module")
def giga_emulator() -> Iterator[RunningEmulator]:
    emulator = start_emulator("gigachat", stream_tokens=3, credentials=giga_tests.CREDENTIALS)
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="module")
def yandex_emulator() -> Iterator[RunningEmulator]:
    emulator = start_emulator("yandexgpt", stream_tokens=3, api_key="yc-api-key")
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def client(
    live_server: Any,
    transactional_db: None,
    giga_emulator: RunningEmulator,
    yandex_emulator: RunningEmulator,
    load_catalog: Callable[[str], None],
    api_key: CreatedKey,
    monkeypatch: pytest.MonkeyPatch,
) -> openai.OpenAI:
    giga_emulator.control.reset()
    yandex_emulator.control.reset()
    monkeypatch.setenv("TEST_GIGACHAT_CREDENTIALS", giga_tests.CREDENTIALS)
    monkeypatch.setenv("YANDEXGPT_API_KEY", "yc-api-key")
    giga = giga_tests.gigachat_catalog(giga_emulator.base_url)
    yandex = yandex_tests.catalog(yandex_emulator.base_url)
    # One catalog: both files' providers, then both files' models.
    providers = giga.split("models:")[0] + yandex.split("models:")[0].split("providers:")[1]
    models = giga.split("models:")[1] + yandex.split("models:")[1]
    load_catalog(providers + "models:" + models)
    return openai.OpenAI(
        base_url=f"{live_server.url}/v1", api_key=api_key.plaintext, max_retries=0, timeout=20
    )


MODELS = ["gigachat/max", "gigachat/ultra", "yandex/aliceai-llm"]
ASK = [{"role": "user", "content": "Почему небо голубое?"}]


@pytest.mark.parametrize("model", MODELS)
def test_reasoning_content_comes_out_when_reasoning_is_asked_for(
    client: openai.OpenAI, model: str
) -> None:
    completion = client.chat.completions.create(
        model=model, messages=ASK, extra_body={"reasoning_effort": "high"}
    )
    message = completion.choices[0].message
    reasoning = message.model_extra["reasoning_content"]
    assert isinstance(reasoning, str) and "high" in reasoning
    assert message.content
    assert reasoning not in message.content  # the answer is not mixed with it


@pytest.mark.parametrize("model", MODELS)
def test_reasoning_content_streams_as_deltas_before_the_answer(
    client: openai.OpenAI, model: str
) -> None:
    stream = client.chat.completions.create(
        model=model,
        messages=ASK,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"reasoning_effort": "medium"},
    )
    order: list[str] = []
    reasoning = content = ""
    for chunk in stream:
        for choice in chunk.choices:
            piece = (choice.delta.model_extra or {}).get("reasoning_content")
            if piece:
                reasoning += piece
                order.append("reasoning")
            if choice.delta.content:
                content += choice.delta.content
                order.append("content")
    assert "medium" in reasoning
    assert content
    assert order.index("content") > order.index("reasoning")
    assert "reasoning" not in order[order.index("content") :]


@pytest.mark.parametrize("model", MODELS)
def test_no_reasoning_content_unless_asked(client: openai.OpenAI, model: str) -> None:
    completion = client.chat.completions.create(model=model, messages=ASK)
    assert "reasoning_content" not in (completion.choices[0].message.model_extra or {})
    assert completion.usage.completion_tokens_details.reasoning_tokens == 0


def test_the_surface_reports_reasoning_tokens_inside_completion_tokens(
    client: openai.OpenAI,
) -> None:
    plain = client.chat.completions.create(model="yandex/aliceai-llm", messages=ASK)
    thinking = client.chat.completions.create(
        model="yandex/aliceai-llm", messages=ASK, extra_body={"reasoning_effort": "low"}
    )
    reasoning_tokens = thinking.usage.completion_tokens_details.reasoning_tokens
    assert reasoning_tokens > 0
    assert thinking.usage.completion_tokens == plain.usage.completion_tokens + reasoning_tokens
