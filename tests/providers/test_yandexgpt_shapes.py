"""The emulator against recorded YandexGPT shapes; adapter and version units.

The official SDK cannot check the emulator's native surface (it speaks gRPC
there), so the recordings from the spec stand in: every field and JSON type
they show must appear in the emulator's answer.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from providers.base import FinishReason
from providers.emulators.testing import RunningEmulator, start_emulator
from providers.errors import ProviderError
from providers.yandexgpt import iter_json_lines, tool_call_id
from providers.yandexgpt.adapter import _alternative, usage_from_yandex
from routing.table import ModelRoute
from routing.versions import (
    CatalogVersionError,
    expand_versions,
    resolve_model_id,
    version_calendar,
)

FIXTURES = Path(__file__).parent / "fixtures" / "yandexgpt"
FOLDER = "b1gemulatorfolder"
AUTH = {"Authorization": "Api-Key any"}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text("utf-8"))


def shape(value: Any) -> Any:
    """Reduce JSON to its structure: keys and JSON types, first list item."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__ if value is not None else "null"


def assert_covers(actual: Any, recorded: Any, where: str = "$") -> None:
    """Every field of ``recorded`` exists in ``actual`` with the same type."""
    if isinstance(recorded, dict):
        assert isinstance(actual, dict), where
        for key, item in recorded.items():
            assert key in actual, f"{where}.{key} missing"
            assert_covers(actual[key], item, f"{where}.{key}")
    elif isinstance(recorded, list):
        assert isinstance(actual, list), where
        if recorded and actual:
            assert_covers(actual[0], recorded[0], f"{where}[0]")
    else:
        assert actual == recorded, f"{where}: {actual} != {recorded}"


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningEmulator]:
    running = start_emulator("yandexgpt", stream_tokens=3, chunk_interval_ms=0, async_polls=1)
    try:
        yield running
    finally:
        running.stop()


def post(
    emulator: RunningEmulator, path: str, body: dict[str, Any], **headers: str
) -> requests.Response:
    return requests.post(emulator.url(path), json=body, headers={**AUTH, **headers}, timeout=10)


def completion_body(text: str = "Name three rivers", **extra: Any) -> dict[str, Any]:
    return {
        "modelUri": f"gpt://{FOLDER}/yandexgpt-lite/latest",
        "completionOptions": {"stream": False, "temperature": 0.2, "maxTokens": "500"},
        "messages": [{"role": "system", "text": "Be terse."}, {"role": "user", "text": text}],
        **extra,
    }


def test_completion_matches_recorded_shape(emulator: RunningEmulator) -> None:
    response = post(
        emulator,
        "/foundationModels/v1/completion",
        completion_body(),
        **{"x-client-request-id": "abc"},
    )
    assert response.headers["x-client-request-id"] == "abc"
    assert "x-request-id" in response.headers
    assert_covers(shape(response.json()), shape(fixture("completion.json")))


def test_tool_call_matches_recorded_shape(emulator: RunningEmulator) -> None:
    tools = [
        {
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            }
        }
    ]
    response = post(
        emulator,
        "/foundationModels/v1/completion",
        completion_body("weather in Moscow?", tools=tools),
    )
    assert_covers(shape(response.json()), shape(fixture("completion_tool_calls.json")))
    assert (
        response.json()["result"]["alternatives"][0]["message"]["toolCallList"]
        == (
            fixture("completion_tool_calls.json")["result"]["alternatives"][0]["message"][
                "toolCallList"
            ]
        )
    )


def test_stream_lines_match_recorded_shape_and_are_cumulative(
    emulator: RunningEmulator,
) -> None:
    body = completion_body("Привет 🌍")
    body["completionOptions"]["stream"] = True
    response = post(emulator, "/foundationModels/v1/completion", body)
    lines = [json.loads(line) for line in response.content.decode().splitlines()]
    recorded = [json.loads(line) for line in (FIXTURES / "stream.ndjson").read_text().splitlines()]
    for line in lines:
        assert_covers(shape(line), shape(recorded[0]))
    texts = [line["result"]["alternatives"][0]["message"]["text"] for line in lines]
    assert all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:], strict=False))
    statuses = [line["result"]["alternatives"][0]["status"] for line in lines]
    assert statuses == ["ALTERNATIVE_STATUS_PARTIAL"] * 2 + ["ALTERNATIVE_STATUS_FINAL"]


def test_error_matches_recorded_shape(emulator: RunningEmulator) -> None:
    response = post(
        emulator,
        "/foundationModels/v1/completion",
        completion_body(),
        **{"X-Emulator-Fault": "http_429"},
    )
    assert response.status_code == 429
    assert response.json() == fixture("error_429.json")


def test_unary_endpoints_match_recorded_shapes(emulator: RunningEmulator) -> None:
    tokens = post(
        emulator,
        "/foundationModels/v1/tokenize",
        {"modelUri": f"gpt://{FOLDER}/yandexgpt/latest", "text": "ping"},
    )
    assert_covers(shape(tokens.json()), shape(fixture("tokenize.json")))
    embedding = post(
        emulator,
        "/foundationModels/v1/textEmbedding",
        {"modelUri": f"emb://{FOLDER}/text-search-doc/latest", "text": "ping"},
    )
    assert_covers(shape(embedding.json()), shape(fixture("embedding.json")))
    assert len(embedding.json()["embedding"]) == 256
    bad = post(emulator, "/foundationModels/v1/tokenize", {"modelUri": "yandexgpt", "text": "x"})
    assert (bad.status_code, bad.json()["code"]) == (400, 3)


def test_async_operation_is_polled_to_completion(emulator: RunningEmulator) -> None:
    operation = post(emulator, "/foundationModels/v1/completionAsync", completion_body()).json()
    assert_covers(shape(operation), shape(fixture("operation_pending.json")))
    first = requests.get(emulator.url(f"/operations/{operation['id']}"), headers=AUTH, timeout=5)
    assert first.json()["done"] is False
    done = requests.get(
        emulator.url(f"/operations/{operation['id']}"), headers=AUTH, timeout=5
    ).json()
    assert done["done"] is True
    assert done["response"]["@type"].endswith("foundation_models.v1.CompletionResponse")
    assert_covers(
        shape({"result": {k: v for k, v in done["response"].items() if k != "@type"}}),
        shape(fixture("completion.json")),
    )


# --- adapter units on the recordings ---------------------------------------------------


class _Raw:
    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    def read1(self, size: int, decode_content: bool = False) -> bytes:
        return self.pieces.pop(0) if self.pieces else b""


class _Response:
    # No http.client response underneath: the reader takes urllib3's path.
    headers: dict[str, str] = {}

    def __init__(self, pieces: list[bytes]) -> None:
        self.raw = _Raw(pieces)
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_line_iterator_rejoins_characters_split_across_reads() -> None:
    body = (FIXTURES / "stream.ndjson").read_bytes().replace(b"Volga", "Волга 🚀".encode())
    # Cut every 3 bytes: boundaries land inside Cyrillic and emoji sequences.
    response = _Response([body[i : i + 3] for i in range(0, len(body), 3)])
    lines = list(iter_json_lines(response, provider="y"))  # type: ignore[arg-type]
    texts = [orjson.loads(x)["result"]["alternatives"][0]["message"]["text"] for x in lines]
    assert texts == ["Волга 🚀", "Волга 🚀, Lena, Ob."]
    assert response.closed is True


def test_recorded_completion_parses_to_ints_and_finish_reasons() -> None:
    result = fixture("completion.json")["result"]
    usage = usage_from_yandex(result["usage"])
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (21, 7, 28)
    message, finish = _alternative(result["alternatives"][0])
    assert (message.content, finish) == ("Volga, Lena, Ob.", FinishReason.STOP)

    calls_result = fixture("completion_tool_calls.json")["result"]
    message, finish = _alternative(calls_result["alternatives"][0])
    assert finish == FinishReason.TOOL_CALLS
    assert [(c.name, c.arguments) for c in message.tool_calls] == [
        ("get_weather", '{"city":"Moscow"}')
    ]
    assert message.tool_calls[0].id == tool_call_id(0, "get_weather", {"city": "Moscow"})
    # Stable: key order of the arguments does not change the id.
    assert tool_call_id(0, "f", {"a": 1, "b": 2}) == tool_call_id(0, "f", {"b": 2, "a": 1})
    assert tool_call_id(0, "f", {}) != tool_call_id(1, "f", {})


def test_recorded_error_maps_to_retryable_rate_limit() -> None:
    from providers.base import ProviderConfig
    from providers.yandexgpt import YandexGPTProvider

    adapter = YandexGPTProvider(
        ProviderConfig(
            name="yandex",
            kind="yandexgpt",
            base_url="http://127.0.0.1:9",
            credential="k",
            options={"folder_id": FOLDER},
        )
    )
    error = adapter.error_from_body(429, (FIXTURES / "error_429.json").read_bytes())
    assert isinstance(error, ProviderError)
    assert (error.retryable, error.status, error.code) == (True, 429, "upstream_rate_limited")
    for status in (400, 401, 403, 404):
        assert adapter.error_from_body(status, b'{"code": 3, "message": "x"}').retryable is False
    adapter.close()


# --- versions -------------------------------------------------------------------------


def test_catalog_versions_expand_per_branch() -> None:
    entries = expand_versions(
        [
            {
                "id": "yandex/yandexgpt",
                "provider": "y",
                "upstream": "yandexgpt/latest",
                "versions": {
                    "latest": {"since": dt.date(2025, 2, 9)},
                    "rc": {"until": "2025-08-21"},
                    "deprecated": None,
                },
            },
            {"id": "plain/model", "provider": "y", "upstream": "m"},
        ]
    )
    assert [(e["id"], e["upstream"], e.get("deprecated")) for e in entries] == [
        ("yandex/yandexgpt:latest", "yandexgpt/latest", False),
        ("yandex/yandexgpt:rc", "yandexgpt/rc", False),
        ("yandex/yandexgpt:deprecated", "yandexgpt/deprecated", True),
        ("plain/model", "m", None),
    ]
    assert entries[0]["since"] == "2025-02-09" and entries[1]["until"] == "2025-08-21"
    with pytest.raises(CatalogVersionError, match="not a date"):
        expand_versions([{"id": "a/b", "upstream": "b", "versions": {"rc": {"until": "soon"}}}])
    with pytest.raises(CatalogVersionError, match="unknown field"):
        expand_versions([{"id": "a/b", "upstream": "b", "versions": {"rc": {"promote": 1}}}])


def test_bare_id_resolves_to_latest_only_when_it_exists() -> None:
    known = {"a/b:latest": 1, "a/b:rc": 1, "c/d": 1}
    assert resolve_model_id("a/b", known) == "a/b:latest"
    assert resolve_model_id("a/b:rc", known) == "a/b:rc"
    assert resolve_model_id("c/d", known) == "c/d"
    assert resolve_model_id("x/y", known) == "x/y"


def test_version_calendar_lists_promotions_and_sunsets() -> None:
    def route(model_id: str, until: dt.date | None, deprecated: bool = False) -> ModelRoute:
        return ModelRoute(
            model_id, "chat", "", 0, None, None, None, (), deprecated, None, until, ""
        )

    rows = version_calendar(
        [
            route("a:rc", dt.date(2025, 8, 21)),
            route("a:deprecated", dt.date(2025, 9, 21), True),
            route("a:latest", None),
        ],
        today=dt.date(2025, 8, 1),
    )
    assert [(r["model"], r["event"], r["days_left"]) for r in rows] == [
        ("a:rc", "promoted to latest", 20),
        ("a:deprecated", "withdrawn", 51),
    ]


def test_openai_surface_serves_full_uri_models(emulator: RunningEmulator) -> None:
    from providers.base import ChatRequest, Message, ProviderConfig
    from providers.yandexgpt import YandexGPTProvider

    adapter = YandexGPTProvider(
        ProviderConfig(
            name="yandex-openai",
            kind="yandexgpt",
            base_url=emulator.url("/v1"),
            credential="k",
            options={"folder_id": FOLDER, "surface": "openai"},
        )
    )
    request = ChatRequest(
        model="qwen3-235b-a22b-fp8/latest", messages=[Message(role="user", content="Привет")]
    )
    assert adapter.chat(request).choices[0].message.content == "Ответ: Echo: Привет"
    stream_request = ChatRequest(
        model="qwen3-235b-a22b-fp8", messages=[Message(role="user", content="Привет")]
    )
    text = "".join(c.content or "" for c in adapter.stream(stream_request))
    assert text == "Ответ: Echo: Привет"
    sent = emulator.control.stats()["last_request"]
    assert sent["json"]["model"] == f"gpt://{FOLDER}/qwen3-235b-a22b-fp8/latest"
    assert sent["headers"]["openai-project"] == FOLDER
    adapter.close()
    bare = requests.post(
        emulator.url("/v1/chat/completions"),
        json={"model": "yandexgpt", "messages": [{"role": "user", "content": "x"}]},
        headers={"Authorization": "Bearer k"},
        timeout=5,
    )
    assert bare.status_code == 400
    assert "Failed to parse model URI" in bare.json()["error"]["message"]


def test_late_content_filter_replaces_the_streamed_answer(emulator: RunningEmulator) -> None:
    """A CONTENT_FILTER line whose text does not extend the stream ends it normally."""
    from providers.base import ChatRequest, Message, ProviderConfig
    from providers.emulators.yandexgpt import CONTENT_FILTER_TEXT
    from providers.yandexgpt import YandexGPTProvider

    body = completion_body("censor me")
    body["completionOptions"]["stream"] = True
    lines = post(emulator, "/foundationModels/v1/completion", body)
    statuses = [
        json.loads(line)["result"]["alternatives"][0]["status"]
        for line in lines.text.splitlines()
        if line
    ]
    assert statuses[0] == "ALTERNATIVE_STATUS_PARTIAL"
    assert statuses[-1] == "ALTERNATIVE_STATUS_CONTENT_FILTER"

    adapter = YandexGPTProvider(
        ProviderConfig(
            name="yandex",
            kind="yandexgpt",
            base_url=emulator.base_url,
            credential="k",
            options={"folder_id": FOLDER},
        )
    )
    request = ChatRequest(model="yandexgpt", messages=[Message(role="user", content="censor me")])
    plain = adapter.chat(request)
    assert plain.choices[0].finish_reason == FinishReason.CONTENT_FILTER
    assert plain.choices[0].message.content == CONTENT_FILTER_TEXT
    request.stream = True
    chunks = list(adapter.stream(request))
    adapter.close()
    streamed = "".join(c.content or "" for c in chunks)
    assert streamed and "Ответ 🤖: Echo: censor me".startswith(streamed)
    finishing = [c for c in chunks if c.finish_reason is not None]
    assert [c.finish_reason for c in finishing] == [FinishReason.CONTENT_FILTER]
    assert finishing[0].refusal == CONTENT_FILTER_TEXT
    assert chunks[-1].usage is not None


def test_surface_model_names_are_normalised() -> None:
    from providers.yandexgpt.adapter import model_name, surface_call_id, unique_call_id

    assert model_name(f"gpt://{FOLDER}/qwen3-235b-a22b-fp8/latest") == "qwen3-235b-a22b-fp8/latest"
    assert model_name("qwen3-235b-a22b-fp8/latest") == "qwen3-235b-a22b-fp8/latest"
    assert surface_call_id(unique_call_id(1, "get_weather")) == "get_weather"
    assert surface_call_id("call_abc") == "call_abc"
