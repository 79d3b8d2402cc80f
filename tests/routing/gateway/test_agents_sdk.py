"""The OpenAI Agents SDK, unchanged, running an agent with one tool on GigaChat.

The SDK speaks only the Responses API; the zero-config stack serves it from
the GigaChat emulator through the gateway's translation.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

from providers.emulators.testing import RunningEmulator
from tests.conftest import LiveGateway


@pytest.fixture(autouse=True)
def _no_tracing() -> None:
    # Traces would be exported to OpenAI's servers.
    set_tracing_disabled(True)


def test_agent_with_a_tool_on_gigachat(
    demo: LiveGateway, demo_emulators: dict[str, RunningEmulator]
) -> None:
    calls: list[str] = []

    @function_tool
    def weather_forecast(location: str) -> str:
        """Weather forecast for a city."""
        calls.append(location)
        return f"Sunny +20 in {location}"

    client = AsyncOpenAI(base_url=demo.url + "/v1", api_key=demo.key, max_retries=0, timeout=10)
    agent = Agent(
        name="Forecaster",
        instructions="Answer with the forecast.",
        tools=[weather_forecast],
        model=OpenAIResponsesModel(model="gigachat/gigachat-2", openai_client=client),
    )
    # Its own event loop in its own thread: the session's Playwright loop
    # may already run in this one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        result = pool.submit(
            asyncio.run, Runner.run(agent, "What is the weather in Kazan?")
        ).result(timeout=60)
    assert calls == ["Kazan"]
    # GigaChat takes function results as JSON: the adapter wraps plain text.
    assert result.final_output == 'Ответ: Function result: {"result":"Sunny +20 in Kazan"}'
    # Both turns went to GigaChat (the second carried the tool's result).
    chat = [
        entry
        for entry in demo_emulators["gigachat"].control.stats()["recent_requests"]
        if entry["path"] == "/api/v1/chat/completions"
    ]
    assert len(chat) == 2
    last: Any = chat[-1]["json"]["messages"]
    assert last[-1]["role"] == "function"
    assert "Sunny +20 in Kazan" in last[-1]["content"]
