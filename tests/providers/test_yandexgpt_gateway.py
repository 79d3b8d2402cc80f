"""YandexGPT through the gateway, driven by the official ``openai`` SDK.

The gateway runs in ``live_server``; the YandexGPT emulator is a real
process speaking the native REST API, so these tests walk the adapter,
the routing of versioned ids and the error mapping over real HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import requests

from keys.services import CreatedKey
from providers.emulators.testing import RunningEmulator, start_emulator
from providers.emulators.yandexgpt import CONTENT_FILTER_TEXT
from routing.models import UsageRecord
from routing.usage import records as usage_records

FOLDER = "b1gemulatorfolder"
VERSIONS = {"latest": "09.02.2025", "rc": "21.07.2025", "deprecated": "18.01.2024"}
TEXT = "Привет, мир! 🌍🚀 Съешь же ещё этих мягких французских булок 👍🏽 да выпей чаю"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def catalog(base_url: str) -> str:
    return f"""
providers:
  - name: yandex
    kind: yandexgpt
    base_url: {base_url}
    api_key_env: YANDEXGPT_API_KEY
    options: {{folder_id: {FOLDER}, read_timeout: 2}}
  - name: yandex-openai
    kind: yandexgpt
    base_url: {base_url}/v1
    api_key_env: YANDEXGPT_API_KEY
    options: {{folder_id: {FOLDER}, surface: openai, read_timeout: 2}}
  - name: yandex-wrong-folder
    kind: yandexgpt
    base_url: {base_url}
    api_key_env: YANDEXGPT_API_KEY
    options: {{folder_id: b1gsomeoneelse}}
models:
  - id: yandex/aliceai-llm
    name: Alice AI LLM
    provider: yandex-openai
    upstream: aliceai-llm/latest
  - id: yandex/yandexgpt
    name: YandexGPT Pro
    provider: yandex
    upstream: yandexgpt
    versions:
      latest: {{since: 2025-02-09, until: 2025-08-21, model_version: "09.02.2025"}}
      rc: {{since: 2025-07-21, until: 2025-08-21}}
      deprecated: {{since: 2025-02-09, until: 2025-09-21}}
  - id: yandex/yandexgpt-lite
    provider: yandex
    upstream: yandexgpt-lite
    versions:
      latest: {{}}
      rc: {{}}
      deprecated: {{}}
  - id: yandex/misconfigured
    provider: yandex-wrong-folder
    upstream: yandexgpt-lite
  - id: yandex/text-search-doc
    type: embedding
    provider: yandex
    upstream: text-search-doc
  - id: yandex/text-search-query
    type: embedding
    provider: yandex
    upstream: text-search-query
"""


@pytest.fixture(scope="module")
def emulator_process() -> Iterator[RunningEmulator]:
    emulator = start_emulator(
        "yandexgpt", stream_tokens=6, chunk_interval_ms=2, api_key="yc-api-key"
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
def gateway(
    live_server: Any,
    emulator: RunningEmulator,
    load_catalog: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    monkeypatch.setenv("YANDEXGPT_API_KEY", "yc-api-key")
    load_catalog(catalog(emulator.base_url))
    return f"{live_server.url}/v1"


def sdk(gateway: str, key: CreatedKey) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway, api_key=key.plaintext, max_retries=0, timeout=20)


def ask(client: openai.OpenAI, model: str, text: str = TEXT, **kwargs: Any) -> Any:
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], **kwargs
    )


# --- versions -------------------------------------------------------------------


@pytest.mark.parametrize("branch", ["latest", "rc", "deprecated"])
def test_each_branch_answers_and_reports_its_version(
    gateway: str, api_key: CreatedKey, emulator: RunningEmulator, branch: str
) -> None:
    raw = ask(sdk(gateway, api_key), f"yandex/yandexgpt:{branch}")
    completion = raw.parse()
    assert completion.model == f"yandex/yandexgpt:{branch}"
    assert raw.headers["x-xrouter-model-version"] == VERSIONS[branch]
    assert completion.choices[0].message.content == "Ответ 🤖: Echo: " + TEXT
    assert completion.usage.prompt_tokens == 1 + len(TEXT.split())
    sent = emulator.control.stats()["last_request"]
    assert sent["json"]["modelUri"] == f"gpt://{FOLDER}/yandexgpt/{branch}"
    assert sent["headers"]["authorization"] == "Api-Key yc-api-key"
    assert sent["headers"]["x-data-logging-enabled"] == "false"


def test_bare_id_means_latest(gateway: str, api_key: CreatedKey) -> None:
    raw = ask(sdk(gateway, api_key), "yandex/yandexgpt")
    assert raw.parse().model == "yandex/yandexgpt:latest"
    assert raw.headers["x-xrouter-model-version"] == VERSIONS["latest"]
    assert "Deprecation" not in raw.headers


def test_deprecated_branch_warns(gateway: str, api_key: CreatedKey) -> None:
    raw = ask(sdk(gateway, api_key), "yandex/yandexgpt:deprecated")
    assert raw.headers["Deprecation"] == "@1739059200"  # 2025-02-09T00:00:00Z
    assert raw.headers["Sunset"] == "Sun, 21 Sep 2025 00:00:00 GMT"
    assert raw.headers["Warning"] == (
        "299 - \"The model 'yandex/yandexgpt:deprecated' is deprecated and will be "
        "withdrawn on 2025-09-21; move to 'yandex/yandexgpt:latest'.\""
    )


def test_models_list_shows_branch_dates(gateway: str, api_key: CreatedKey) -> None:
    models = {m.id: m for m in sdk(gateway, api_key).models.list().data}
    assert {"yandex/yandexgpt:latest", "yandex/yandexgpt:rc", "yandex/yandexgpt:deprecated"} <= (
        set(models)
    )
    rc = models["yandex/yandexgpt:rc"].model_extra["version"]
    assert rc == {
        "base": "yandex/yandexgpt",
        "branch": "rc",
        "deprecated": False,
        "since": "2025-07-21",
        "until": "2025-08-21",
        "upstream_version": None,
    }


def test_key_may_allow_a_model_with_or_without_branch(
    gateway: str, make_key: Callable[..., CreatedKey]
) -> None:
    any_branch = sdk(gateway, make_key(allowed_models=["yandex/yandexgpt"]))
    assert ask(any_branch, "yandex/yandexgpt:rc").parse().model == "yandex/yandexgpt:rc"
    assert ask(any_branch, "yandex/yandexgpt").parse().model == "yandex/yandexgpt:latest"

    pinned = sdk(gateway, make_key(allowed_models=["yandex/yandexgpt:rc"]))
    assert ask(pinned, "yandex/yandexgpt:rc").parse().model == "yandex/yandexgpt:rc"
    with pytest.raises(openai.PermissionDeniedError, match="yandex/yandexgpt:latest"):
        ask(pinned, "yandex/yandexgpt")
    with pytest.raises(openai.PermissionDeniedError):
        ask(pinned, "yandex/yandexgpt-lite:rc")


# --- streaming ------------------------------------------------------------------------


def test_stream_deltas_concatenate_to_the_full_text(
    gateway: str, api_key: CreatedKey, emulator: RunningEmulator
) -> None:
    client = sdk(gateway, api_key)
    full = ask(client, "yandex/yandexgpt:rc").parse().choices[0].message.content
    raw = client.chat.completions.with_raw_response.create(
        model="yandex/yandexgpt:rc",
        messages=[{"role": "user", "content": TEXT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    assert raw.headers["x-xrouter-model-version"] == VERSIONS["rc"]
    deltas: list[str] = []
    finish = None
    usage = None
    for chunk in raw.parse():
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                deltas.append(choice.delta.content)
            finish = choice.finish_reason or finish
    assert "".join(deltas) == full == "Ответ 🤖: Echo: " + TEXT
    assert len(deltas) == 6
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens == len(full.split())


def test_emulator_cuts_stream_chunks_inside_multibyte_characters(
    emulator: RunningEmulator,
) -> None:
    """The gateway test above runs against chunks that split UTF-8 sequences."""
    response = requests.post(
        emulator.url("/foundationModels/v1/completion"),
        json={
            "modelUri": f"gpt://{FOLDER}/yandexgpt/latest",
            "completionOptions": {"stream": True},
            "messages": [{"role": "user", "text": TEXT}],
        },
        headers={"Authorization": "Api-Key yc-api-key"},
        stream=True,
        timeout=10,
    )
    pieces = list(response.iter_content(chunk_size=None))
    undecodable = 0
    for piece in pieces:
        try:
            piece.decode("utf-8")
        except UnicodeDecodeError:
            undecodable += 1
    assert len(pieces) >= 6
    assert undecodable >= 6
    assert b"".join(pieces).decode("utf-8").count("\n") == 6


# --- tools, formats, embeddings ----------------------------------------------------------


def test_tool_call_round_trip(gateway: str, api_key: CreatedKey, emulator: RunningEmulator) -> None:
    client = sdk(gateway, api_key)
    question = {"role": "user", "content": "What's the weather in Москва?"}
    first = client.chat.completions.create(
        model="yandex/yandexgpt", messages=[question], tools=[WEATHER_TOOL]
    )
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"city":"Москва"}')
    assert call.id.startswith("call_")

    streamed = client.chat.completions.create(
        model="yandex/yandexgpt", messages=[question], tools=[WEATHER_TOOL], stream=True
    )
    stream_calls = [
        c for chunk in streamed for ch in chunk.choices for c in ch.delta.tool_calls or []
    ]
    assert [(c.id, c.function.name, c.function.arguments) for c in stream_calls] == [
        (call.id, "get_weather", '{"city":"Москва"}')
    ]

    second = client.chat.completions.create(
        model="yandex/yandexgpt",
        messages=[
            question,
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "−5 °C, снег ❄️"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert second.choices[0].message.content == "Ответ 🤖: Tool result: −5 °C, снег ❄️"
    sent = emulator.control.stats()["last_request"]["json"]["messages"]
    assert sent[1] == {
        "role": "assistant",
        "toolCallList": {
            "toolCalls": [
                {"functionCall": {"name": "get_weather", "arguments": {"city": "Москва"}}}
            ]
        },
    }
    assert sent[2] == {
        "role": "user",
        "toolResultList": {
            "toolResults": [{"functionResult": {"name": "get_weather", "content": "−5 °C, снег ❄️"}}]
        },
    }


def test_json_schema_response_format_and_status_mapping(
    gateway: str, api_key: CreatedKey, emulator: RunningEmulator
) -> None:
    client = sdk(gateway, api_key)
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "n": {"type": "integer"}},
    }
    result = client.chat.completions.create(
        model="yandex/yandexgpt",
        messages=[{"role": "user", "content": "JSON please"}],
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        max_tokens=50,
        temperature=1.7,
    )
    assert result.choices[0].message.content == '{"city": "Moscow", "n": 1}'
    sent = emulator.control.stats()["last_request"]["json"]
    assert sent["jsonSchema"] == {"schema": schema}
    assert sent["completionOptions"] == {"stream": False, "temperature": 1.0, "maxTokens": "50"}

    truncated = ask(client, "yandex/yandexgpt", max_tokens=3).parse()
    assert truncated.choices[0].finish_reason == "length"
    assert truncated.choices[0].message.content == "Ответ 🤖: Echo:"
    filtered = ask(client, "yandex/yandexgpt", "something forbidden").parse()
    assert filtered.choices[0].finish_reason == "content_filter"


def test_embeddings_use_doc_and_query_models(
    gateway: str, api_key: CreatedKey, emulator: RunningEmulator
) -> None:
    client = sdk(gateway, api_key)
    doc = client.embeddings.create(model="yandex/text-search-doc", input=["Волга", "Лена"])
    query = client.embeddings.create(model="yandex/text-search-query", input="Волга")
    assert [len(item.embedding) for item in doc.data] == [256, 256]
    assert doc.usage.prompt_tokens == 2
    assert doc.data[0].embedding != query.data[0].embedding
    sent = emulator.control.stats()["last_request"]["json"]
    assert sent == {"modelUri": f"emb://{FOLDER}/text-search-query/latest", "text": "Волга"}


# --- faults ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error", "status", "code"),
    [
        ("http_429", openai.RateLimitError, 429, "upstream_rate_limited"),
        ("http_503", openai.InternalServerError, 503, "upstream_unavailable"),
        ("http_504", openai.InternalServerError, 504, "upstream_timeout"),
        ("timeout", openai.InternalServerError, 504, "upstream_timeout"),
        ("http_400", openai.BadRequestError, 400, "invalid_request"),
        ("http_401", openai.InternalServerError, 502, "upstream_auth_failed"),
        ("http_403", openai.InternalServerError, 502, "upstream_auth_failed"),
        ("http_404", openai.NotFoundError, 404, "model_not_found"),
        ("http_500", openai.InternalServerError, 502, "upstream_error"),
        ("malformed", openai.InternalServerError, 502, "upstream_bad_response"),
        # http.py reports a body cut short as a generic, non-retryable failure.
        ("cut", openai.InternalServerError, 502, "upstream_stream_cut"),
    ],
)
def test_fault_maps_to_client_error(
    gateway: str,
    api_key: CreatedKey,
    emulator: RunningEmulator,
    fault: str,
    error: type[openai.APIStatusError],
    status: int,
    code: str,
) -> None:
    emulator.control.set_config(fault=fault, fault_count=1, timeout_s=10)
    with pytest.raises(error) as excinfo:
        ask(sdk(gateway, api_key), "yandex/yandexgpt")
    assert excinfo.value.status_code == status
    assert excinfo.value.code == code


def test_quota_error_says_which_quota(
    gateway: str, api_key: CreatedKey, emulator: RunningEmulator
) -> None:
    emulator.control.set_config(fault="http_429", fault_count=1)
    with pytest.raises(openai.RateLimitError, match="gauge quota limit exceed"):
        ask(sdk(gateway, api_key), "yandex/yandexgpt")


def test_wrong_folder_is_an_operator_error(gateway: str, api_key: CreatedKey) -> None:
    with pytest.raises(openai.InternalServerError) as excinfo:
        ask(sdk(gateway, api_key), "yandex/misconfigured")
    assert excinfo.value.code == "upstream_misconfigured"
    assert "b1gsomeoneelse" not in str(excinfo.value)


def test_stream_cut_mid_way_ends_with_an_error_event(
    gateway: str, api_key: CreatedKey, emulator: RunningEmulator
) -> None:
    emulator.control.set_config(fault="cut", fault_count=1)
    stream = sdk(gateway, api_key).chat.completions.create(
        model="yandex/yandexgpt",
        messages=[{"role": "user", "content": TEXT}],
        stream=True,
    )
    received: list[str] = []
    with pytest.raises(openai.APIError, match="broke off"):
        for chunk in stream:
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert received and "".join(received) != "Ответ 🤖: Echo: " + TEXT


def test_native_stream_ending_in_a_late_content_filter_ends_normally(
    gateway: str, api_key: CreatedKey, emulator: RunningEmulator
) -> None:
    """Yandex's output filter replaces an answer already half streamed: no stream error."""
    client = sdk(gateway, api_key)
    messages: Any = [{"role": "user", "content": "please censor this answer"}]
    with client.chat.completions.with_streaming_response.create(
        model="yandex/yandexgpt",
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        stream_id = response.headers["x-generation-id"]
        chunks = list(response.parse())
    choices = [c.choices[0] for c in chunks if c.choices]
    text = "".join(choice.delta.content or "" for choice in choices)
    finishing = [choice for choice in choices if choice.finish_reason]
    assert [choice.finish_reason for choice in finishing] == ["content_filter"]
    # The start of the echo went out before the filter fired; the refusal
    # that replaced it comes as OpenAI's delta.refusal.
    assert text and "Ответ 🤖: Echo: please censor this answer".startswith(text)
    assert finishing[0].delta.refusal == CONTENT_FILTER_TEXT
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0

    raw = client.chat.completions.with_raw_response.create(
        model="yandex/yandexgpt", messages=messages
    )
    plain = raw.parse()
    assert plain.choices[0].finish_reason == "content_filter"
    assert plain.choices[0].message.content == CONTENT_FILTER_TEXT
    # Both usage records say the answer was content-filtered.
    ids = {stream_id, raw.headers["x-generation-id"]}
    sink = usage_records.stream_sink()
    if sink is not None:
        while sink.consume_once(block_ms=10):
            pass
    usage_records.flush_all()
    found = dict(
        UsageRecord.objects.filter(generation_id__in=ids).values_list(
            "generation_id", "finish_reason"
        )
    )
    assert found == dict.fromkeys(ids, "content_filter")


def test_alice_ai_through_the_openai_surface_with_two_calls_of_one_function(
    gateway: str, api_key: CreatedKey, emulator: RunningEmulator
) -> None:
    """The surface names both calls after the function; the client sees unique ids."""
    client = sdk(gateway, api_key)
    plain = client.chat.completions.with_raw_response.create(
        model="yandex/aliceai-llm", messages=[{"role": "user", "content": "Привет"}]
    )
    assert plain.parse().choices[0].message.content == "Ответ: Echo: Привет"
    sent = emulator.control.stats()["last_request"]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["json"]["model"] == f"gpt://{FOLDER}/aliceai-llm/latest"

    tools: Any = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    question = {"role": "user", "content": "weather in Omsk and in Sochi"}
    first = client.chat.completions.create(
        model="yandex/aliceai-llm", messages=[question], tools=tools
    )
    calls = first.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["weather", "weather"]
    assert len({c.id for c in calls}) == 2
    second = client.chat.completions.create(
        model="yandex/aliceai-llm",
        messages=[
            question,
            first.choices[0].message.model_dump(exclude_none=True),
            *[
                {"role": "tool", "tool_call_id": c.id, "content": f"t={n}"}
                for n, c in enumerate(calls)
            ],
        ],
        tools=tools,
    )
    assert second.choices[0].finish_reason == "stop"
    history = emulator.control.stats()["last_request"]["json"]["messages"]
    # The surface gets its own ids back.
    assert [c["id"] for c in history[1]["tool_calls"]] == ["weather", "weather"]
    assert [m["tool_call_id"] for m in history[2:]] == ["weather", "weather"]

    stream = client.chat.completions.create(
        model="yandex/aliceai-llm", messages=[question], tools=tools, stream=True
    )
    ids = [
        call.id
        for chunk in stream
        for choice in chunk.choices
        for call in choice.delta.tool_calls or []
        if call.id
    ]
    assert len(ids) == 2 and len(set(ids)) == 2


def test_example_catalog_loads(load_catalog: Callable[[str], None]) -> None:
    """catalog/yandexgpt.example.yaml is a valid catalog, surface models included."""
    from routing.table import get_table

    text = (Path(__file__).resolve().parents[2] / "catalog" / "yandexgpt.example.yaml").read_text()
    load_catalog(text)
    table = get_table()
    qwen = table.models["yandex/qwen3-235b"].deployments[0]
    assert qwen.upstream == "qwen3-235b-a22b-fp8/latest"
    assert table.providers["yandex-openai"].config.options["surface"] == "openai"
    # Listed but off until the operator prices them: unpriced, no budget would hold.
    assert "yandex/aliceai-llm" not in table.models
    assert "yandex/aliceai-llm-flash" not in table.models


def test_reasoning_options_reach_the_native_api_and_others_are_noted(
    gateway: str, api_key: CreatedKey, emulator: RunningEmulator
) -> None:
    client = sdk(gateway, api_key)
    raw = client.chat.completions.with_raw_response.create(
        model="yandex/yandexgpt",
        messages=[{"role": "user", "content": "think"}],
        extra_body={"reasoningOptions": {"mode": "ENABLED_HIDDEN"}, "repetition_penalty": 1.1},
    )
    sent = emulator.control.stats()["last_request"]["json"]
    assert sent["completionOptions"]["reasoningOptions"] == {"mode": "ENABLED_HIDDEN"}
    assert raw.headers["x-xrouter-ignored-params"] == "repetition_penalty"
    usage = raw.parse().usage
    # Reasoning tokens come out where OpenAI puts them, inside completion_tokens.
    assert usage.completion_tokens_details.reasoning_tokens == 1
    assert usage.completion_tokens > usage.completion_tokens_details.reasoning_tokens
    # The OpenAI surface has no reasoningOptions: noted, not sent.
    surface = client.chat.completions.with_raw_response.create(
        model="yandex/aliceai-llm",
        messages=[{"role": "user", "content": "think"}],
        extra_body={"reasoningOptions": {"mode": "DISABLED"}},
    )
    assert surface.headers["x-xrouter-ignored-params"] == "reasoningOptions"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="yandex/yandexgpt",
            messages=[{"role": "user", "content": "think"}],
            extra_body={"reasoningOptions": {"mode": "LOUD"}},
        )
    assert caught.value.body["param"] == "reasoningOptions.mode"  # type: ignore[index]
