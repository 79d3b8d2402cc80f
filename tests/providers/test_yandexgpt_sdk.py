"""Yandex's official ``yandex-ai-studio-sdk`` against the emulator's OpenAI surface.

The SDK reads the surface's stream strictly: a ``"finish_reason": null`` on an
unfinished chunk crashed it (``None.lower()``), which is how the emulator
learned to leave the key out as Yandex does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests
from yandex_ai_studio_sdk import AIStudio
from yandex_ai_studio_sdk.auth import APIKeyAuth

from providers.emulators.testing import RunningEmulator, start_emulator

FOLDER = "b1gemulatorfolder"


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningEmulator]:
    running = start_emulator("yandexgpt", stream_tokens=3, chunk_interval_ms=1)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def studio(emulator: RunningEmulator) -> AIStudio:
    emulator.control.reset()
    return AIStudio(
        folder_id=FOLDER,
        auth=APIKeyAuth("emulator-key"),
        service_map={"http_completions": emulator.url("/v1/")},
    )


def test_sdk_plain_completion(studio: AIStudio, emulator: RunningEmulator) -> None:
    model = studio.chat.completions("yandexgpt", model_version="latest")
    result = model.run("Назови три реки")
    assert result.choices[0].text == "Ответ: Echo: Назови три реки"
    assert result.choices[0].finish_reason.value == "stop"
    assert result.usage is not None and result.usage.completion_tokens == 5
    sent = emulator.control.stats()["last_request"]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["json"]["model"] == f"gpt://{FOLDER}/yandexgpt/latest"
    assert sent["headers"]["authorization"] == "Api-Key emulator-key"


def test_sdk_stream_grows_to_the_answer(studio: AIStudio) -> None:
    model = studio.chat.completions("yandexgpt", model_version="rc")
    parts = list(model.run_stream("Привет, как дела?"))
    assert len(parts) >= 3
    assert "".join(part.choices[0].delta for part in parts) == "Ответ: Echo: Привет, как дела?"
    assert parts[-1].choices[0].text == "Ответ: Echo: Привет, как дела?"
    assert [part.choices[0].finish_reason.value for part in parts][-1] == "stop"
    assert {part.choices[0].finish_reason.value for part in parts[:-1]} == {"null"}


def test_surface_stream_leaves_finish_reason_out_until_the_end(
    emulator: RunningEmulator,
) -> None:
    response = requests.post(
        emulator.url("/v1/chat/completions"),
        json={
            "model": f"gpt://{FOLDER}/yandexgpt/latest",
            "messages": [{"role": "user", "content": "one two three"}],
            "stream": True,
        },
        headers={"Authorization": "Api-Key k"},
        timeout=5,
    )
    events = [
        json.loads(line[6:])
        for line in response.text.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]
    choices = [event["choices"][0] for event in events if event["choices"]]
    assert all("finish_reason" not in choice for choice in choices[:-1])
    assert choices[-1]["finish_reason"] == "stop"
