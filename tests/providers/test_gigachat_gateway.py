"""GigaChat through the gateway, with the official ``openai`` SDK as the client.

The gateway runs in-process (``live_server``) or as real gunicorn workers
(``running_gateway``); the upstream is the GigaChat emulator, which counts
token requests, so token caching and single-flight are measured, not
assumed.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import openai
import pytest
import time_machine

from keys.services import CreatedKey
from providers.emulators.testing import RunningEmulator, start_emulator
from tests.conftest import LiveGateway
from tests.gateway_process import running_gateway

CREDENTIALS = base64.b64encode(b"gateway:secret").decode()
WEATHER_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "weather_forecast",
            "description": "Weather forecast for a city",
            "parameters": {
                "type": "object",
                "properties": {"location": {"type": "string"}, "num_days": {"type": "integer"}},
                "required": ["location"],
            },
        },
    }
]


def gigachat_catalog(base_url: str) -> str:
    """A catalog with one GigaChat provider at the emulator."""
    return f"""
providers:
  - name: giga
    kind: gigachat
    base_url: {base_url}/api/v1
    api_key_env: TEST_GIGACHAT_CREDENTIALS
    options:
      scope: GIGACHAT_API_PERS
      auth_url: {base_url}/api/v2/oauth
      read_timeout: 2
  - name: giga-v2
    kind: gigachat
    base_url: {base_url}/api/v1
    api_key_env: TEST_GIGACHAT_CREDENTIALS
    options:
      scope: GIGACHAT_API_PERS
      auth_url: {base_url}/api/v2/oauth
      contract: v2
      read_timeout: 2
models:
  - id: gigachat/max
    provider: giga
    upstream: GigaChat-2-Max
    pricing: {{prompt: 1.95, completion: 1.95}}
  - id: gigachat/ultra
    provider: giga-v2
    upstream: GigaChat-3-Ultra
  - id: gigachat/embeddings
    type: embedding
    provider: giga
    upstream: Embeddings
"""


@pytest.fixture(scope="module")
def emulator_process() -> Iterator[RunningEmulator]:
    emulator = start_emulator(
        "gigachat", stream_tokens=5, chunk_interval_ms=5, credentials=CREDENTIALS
    )
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def emulator(emulator_process: RunningEmulator) -> Iterator[RunningEmulator]:
    emulator_process.control.reset()
    yield emulator_process
    emulator_process.control.reset()


@pytest.fixture
def giga(
    live_server: Any,
    transactional_db: None,
    emulator: RunningEmulator,
    load_catalog: Callable[[str], None],
    make_key: Callable[..., CreatedKey],
    monkeypatch: pytest.MonkeyPatch,
) -> LiveGateway:
    monkeypatch.setenv("TEST_GIGACHAT_CREDENTIALS", CREDENTIALS)
    load_catalog(gigachat_catalog(emulator.base_url))
    return LiveGateway(live_server.url, make_key().plaintext)


def test_example_catalog_loads(load_catalog: Callable[[str], None]) -> None:
    """catalog/gigachat.example.yaml is a valid catalog for the gigachat kind."""
    from routing.table import get_table

    text = (Path(__file__).resolve().parents[2] / "catalog" / "gigachat.example.yaml").read_text()
    load_catalog(text)
    table = get_table()
    assert table.models["gigachat/gigachat-2-max"].deployments[0].upstream == "GigaChat-2-Max"
    assert table.providers["gigachat"].config.options["scope"] == "GIGACHAT_API_PERS"
    # Listed but off until the operator prices it: unpriced, no budget would hold.
    assert "gigachat/gigachat-3-ultra" not in table.models


def ask(gateway: LiveGateway, text: str = "Привет", **kwargs: Any) -> Any:
    return gateway.client().chat.completions.create(
        model="gigachat/max", messages=[{"role": "user", "content": text}], **kwargs
    )


def last_chat_request(emulator: RunningEmulator) -> dict[str, Any]:
    for entry in reversed(emulator.control.stats()["recent_requests"]):
        if entry["path"] in ("/api/v1/chat/completions", "/api/v2/chat/completions"):
            return entry  # type: ignore[no-any-return]
    raise AssertionError("no chat request reached the emulator")


def test_plain_chat(giga: LiveGateway, emulator: RunningEmulator) -> None:
    """A plain completion, the served version in a header, our request id upstream."""
    raw = giga.client().chat.completions.with_raw_response.create(
        model="gigachat/max", messages=[{"role": "user", "content": "Привет, мир"}]
    )
    completion = raw.parse()
    assert completion.model == "gigachat/max"
    assert completion.choices[0].message.content == "Ответ: Echo: Привет, мир"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3, 4)
    assert raw.headers["x-xrouter-model-version"] == "2.0.28.2"
    sent = last_chat_request(emulator)
    assert sent["json"]["model"] == "GigaChat-2-Max"
    assert sent["headers"]["x-request-id"] == raw.headers["x-request-id"]


def test_streaming(giga: LiveGateway) -> None:
    """SSE through the gateway: text, finish reason, usage, version header."""
    with giga.client().chat.completions.with_streaming_response.create(
        model="gigachat/max",
        messages=[{"role": "user", "content": "Сколько будет 2+2?"}],
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        assert response.headers["x-xrouter-model-version"] == "2.0.28.2"
        chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Ответ: Echo: Сколько будет 2+2?"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


def test_tool_call_round_trip(giga: LiveGateway, emulator: RunningEmulator) -> None:
    """tools -> functions -> tool_calls -> tool result -> final answer."""
    client = giga.client()
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Kazan?"}]
    first = client.chat.completions.create(
        model="gigachat/max", messages=messages, tools=WEATHER_TOOLS
    )
    assert first.choices[0].finish_reason == "tool_calls"
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "weather_forecast"
    assert call.function.arguments == '{"location":"Kazan","num_days":1}'
    state_id = call.id.removeprefix("call_")

    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": -3}'},
    ]
    final = client.chat.completions.create(
        model="gigachat/max", messages=messages, tools=WEATHER_TOOLS
    )
    assert final.choices[0].message.content == 'Ответ: Function result: {"temperature":-3}'
    sent = last_chat_request(emulator)["json"]["messages"]
    assert sent[1]["functions_state_id"] == state_id
    assert sent[2] == {
        "role": "function",
        "name": "weather_forecast",
        "content": '{"temperature":-3}',
    }

    streamed = list(
        client.chat.completions.create(
            model="gigachat/max", messages=messages[:1], tools=WEATHER_TOOLS, stream=True
        )
    )
    (tool_delta,) = [d for c in streamed for d in (c.choices[0].delta.tool_calls or [])]
    assert tool_delta.function is not None
    assert tool_delta.function.arguments == call.function.arguments


def test_content_filter(giga: LiveGateway, emulator: RunningEmulator) -> None:
    """GigaChat's blacklist finish reaches the client as content_filter."""
    emulator.control.set_config(finish_reason="blacklist")
    completion = ask(giga, "a forbidden topic")
    assert completion.choices[0].finish_reason == "content_filter"
    assert (completion.choices[0].message.content or "").startswith("Не люблю")
    chunks = list(ask(giga, "a forbidden topic", stream=True))
    assert chunks[-1].choices[0].finish_reason == "content_filter"


def test_embeddings(giga: LiveGateway) -> None:
    """Embeddings pass through with summed usage."""
    result = giga.client().embeddings.create(model="gigachat/embeddings", input=["a b", "c"])
    assert [len(item.embedding) for item in result.data] == [1024, 1024]
    assert result.usage.prompt_tokens == 3


def test_token_refresh_on_expiry(giga: LiveGateway, emulator: RunningEmulator) -> None:
    """With time moved to within a minute of expiry, the next call refreshes."""
    with time_machine.travel(time.time(), tick=True) as traveller:
        ask(giga)
        ask(giga)
        assert emulator.control.stats()["token_requests"] == 1
        traveller.shift(timedelta(seconds=1800 - 30))
        ask(giga)
        assert emulator.control.stats()["token_requests"] == 2
        ask(giga)
        assert emulator.control.stats()["token_requests"] == 2


def test_token_rejected_by_api_is_refreshed(giga: LiveGateway, emulator: RunningEmulator) -> None:
    """Server-side expiry (a 401) costs one refresh, invisible to the client."""
    ask(giga)
    emulator.control._call("POST", "/_emulator/gigachat/expire_tokens", {})
    assert ask(giga, "still here").choices[0].message.content == "Ответ: Echo: still here"
    stats = emulator.control.stats()
    assert (stats["token_requests"], stats["auth_failures"]) == (2, 1)


def test_single_flight_under_concurrent_first_requests(
    giga: LiveGateway, emulator: RunningEmulator
) -> None:
    """20 concurrent first requests cause exactly one token request."""
    emulator.control.set_config(latency_ms=100)
    client = giga.client()
    barrier = threading.Barrier(20)

    def call(index: int) -> str:
        barrier.wait()
        completion = client.chat.completions.create(
            model="gigachat/max", messages=[{"role": "user", "content": f"n{index}"}]
        )
        return completion.choices[0].message.content or ""

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(call, range(20)))
    assert answers == [f"Ответ: Echo: n{i}" for i in range(20)]
    stats = emulator.control.stats()
    assert stats["token_requests"] == 1
    assert stats["requests_by_path"]["/api/v1/chat/completions"] == 20


@pytest.mark.parametrize(
    ("fault", "exception", "status"),
    [
        ("http_429", openai.RateLimitError, 429),
        ("http_500", openai.InternalServerError, 502),
        ("http_502", openai.InternalServerError, 502),
        ("http_503", openai.InternalServerError, 503),
        ("http_413", openai.APIStatusError, 413),
        ("http_422", openai.BadRequestError, 400),
        ("http_402", openai.InternalServerError, 502),
        ("http_401", openai.InternalServerError, 502),
        ("malformed", openai.InternalServerError, 502),
        ("cut", openai.InternalServerError, 502),
        ("timeout", openai.InternalServerError, 504),
    ],
)
def test_faults_map_to_client_errors(
    giga: LiveGateway,
    emulator: RunningEmulator,
    fault: str,
    exception: type[openai.APIStatusError],
    status: int,
) -> None:
    """Each upstream fault reaches the OpenAI client as the right error."""
    ask(giga)  # cache the token, so the fault hits the API call
    emulator.control.set_config(fault=fault, timeout_s=5)
    with pytest.raises(exception) as caught:
        ask(giga)
    error = caught.value
    assert error.status_code == status
    assert isinstance(error.body, dict)
    assert set(error.body) == {"message", "type", "param", "code"}
    assert "eyJ" not in str(error.body)
    if fault == "http_429":
        assert error.response.headers["retry-after"] == "1"


def test_stream_cut_ends_with_an_error_event(giga: LiveGateway, emulator: RunningEmulator) -> None:
    """A stream that breaks off after the first chunk ends in an SSE error."""
    ask(giga)
    # Slow enough that the gateway has read the first chunks before the
    # reset (an RST discards data still unread in the socket buffer).
    emulator.control.set_config(fault="cut", stream_tokens=10, chunk_interval_ms=60)
    received = []
    with pytest.raises(openai.APIError, match="broke off|ended before"):
        for chunk in ask(giga, "a b c d e f g h i j", stream=True):
            received.append(chunk)
    assert received, "the chunks before the cut reached the client"


def _connected_workers(worker_pids: list[int], port: int) -> set[int]:
    """Return the worker pids holding an established TCP connection to ``port``."""
    inodes_by_pid: dict[int, set[str]] = {}
    for pid in worker_pids:
        inodes: set[str] = set()
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
        inodes_by_pid[pid] = inodes
    remote = f":{port:04X}"
    upstream_inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as handle:
                lines = handle.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[2].endswith(remote) and fields[3] == "01":  # ESTABLISHED
                upstream_inodes.add(fields[9])
    return {pid for pid, inodes in inodes_by_pid.items() if inodes & upstream_inodes}


@pytest.mark.slow
def test_two_workers_share_one_token(
    transactional_db: None,
    emulator: RunningEmulator,
    load_catalog: Callable[[str], None],
    make_key: Callable[..., CreatedKey],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Parallel requests served by two gunicorn workers use one cached token."""
    if not os.environ.get("REDIS_URL"):
        pytest.skip("needs REDIS_URL: workers share tokens through Redis")
    monkeypatch.setenv("TEST_GIGACHAT_CREDENTIALS", CREDENTIALS)
    load_catalog(gigachat_catalog(emulator.base_url))
    key = make_key().plaintext
    # Slow answers keep both workers busy at once.
    emulator.control.set_config(latency_ms=300)
    # A short graceful timeout: nothing is in flight when the block ends.
    with running_gateway(workers=2, env={"XROUTER_GRACEFUL_TIMEOUT": "2"}) as gateway:

        def call(index: int) -> str:
            # A client (and so a connection) per call: which worker answers
            # is decided at accept, and a gevent worker that no longer blocks
            # on PostgreSQL (psycogreen) can take all eight kept-alive
            # connections of one pool, round after round.
            with openai.OpenAI(
                base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=10
            ) as client:
                completion = client.chat.completions.create(
                    model="gigachat/max", messages=[{"role": "user", "content": f"w{index}"}]
                )
            return completion.choices[0].message.content or ""

        workers = gateway.worker_pids()
        served: set[int] = set()
        for _ in range(5):
            with ThreadPoolExecutor(8) as pool:
                assert list(pool.map(call, range(8))) == [f"Ответ: Echo: w{i}" for i in range(8)]
            served = _connected_workers(workers, emulator.port)
            if len(served) == 2:
                break
        stats = emulator.control.stats()
    assert len(workers) == 2
    assert served == set(workers), "both workers called the emulator"
    assert stats["token_requests"] == 1


def test_v2_model_makes_two_parallel_calls_and_answers_after_both(
    giga: LiveGateway, emulator: RunningEmulator
) -> None:
    """OpenAI tool calling end to end on the v2 contract, the state id carried in the ids."""
    client = giga.client()
    question = {"role": "user", "content": "What is the weather in Omsk and in Sochi?"}
    first = client.chat.completions.create(
        model="gigachat/ultra", messages=[question], tools=WEATHER_TOOLS
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert len(calls) == 2 and len({c.id for c in calls}) == 2
    results = [
        {"role": "tool", "tool_call_id": call.id, "content": f'{{"t": {n}}}'}
        for n, call in enumerate(calls)
    ]
    second = client.chat.completions.create(
        model="gigachat/ultra",
        messages=[question, choice.message.model_dump(exclude_none=True), *results],
        tools=WEATHER_TOOLS,
    )
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == 'Ответ: Function result: {"t":0} {"t":1}'
    assert last_chat_request(emulator)["path"] == "/api/v2/chat/completions"


def test_v2_tool_choice_required(giga: LiveGateway, emulator: RunningEmulator) -> None:
    answer = giga.client().chat.completions.create(
        model="gigachat/ultra",
        messages=[{"role": "user", "content": "hello"}],
        tools=WEATHER_TOOLS,
        tool_choice="required",
    )
    assert answer.choices[0].finish_reason == "tool_calls"
    assert last_chat_request(emulator)["json"]["tool_config"] == {"mode": "any"}


# ---- per-request GigaChat options, X-Session-ID and cached-token billing ---------


def test_gigachat_options_are_validated_and_passed_through(
    giga: LiveGateway, emulator: RunningEmulator
) -> None:
    client = giga.client()
    raw = client.chat.completions.with_raw_response.create(
        model="gigachat/max",
        messages=[{"role": "user", "content": "hi"}],
        extra_body={
            "repetition_penalty": 1.2,
            "update_interval": 0.5,
            "profanity_check": False,
            "flags": ["no_cache"],
            "reasoning_effort": "high",
        },
    )
    assert "x-xrouter-ignored-params" not in raw.headers
    sent = last_chat_request(emulator)["json"]
    assert {k: sent[k] for k in ("repetition_penalty", "update_interval", "flags")} == {
        "repetition_penalty": 1.2,
        "update_interval": 0.5,
        "flags": ["no_cache"],
    }
    assert (sent["profanity_check"], sent["reasoning_effort"]) == (False, "high")

    # Yandex's own option means nothing to GigaChat: served, and said so.
    noted = client.chat.completions.with_raw_response.create(
        model="gigachat/max",
        messages=[{"role": "user", "content": "hi"}],
        extra_body={"reasoningOptions": {"mode": "DISABLED"}},
    )
    assert noted.headers["x-xrouter-ignored-params"] == "reasoningOptions"

    for body, param in (
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"flags": "no_cache"}, "flags"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"profanity_check": "yes"}, "profanity_check"),
    ):
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(
                model="gigachat/max", messages=[{"role": "user", "content": "hi"}], extra_body=body
            )
        assert caught.value.body["param"] == param  # type: ignore[index]


def test_session_id_caches_the_prompt_and_cached_tokens_are_not_billed(
    giga: LiveGateway, emulator: RunningEmulator
) -> None:
    client = giga.client()
    messages: Any = [{"role": "user", "content": "a long stable system prefix and a question"}]
    costs = []
    usages = []
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(
            model="gigachat/max", messages=messages, extra_headers={"X-Session-ID": "conv-7"}
        )
        assert last_chat_request(emulator)["headers"]["x-session-id"] == "conv-7"
        usages.append(raw.parse().usage)
        costs.append(generation_cost(giga, raw.headers["x-generation-id"]))
    first, second = usages
    assert first.prompt_tokens_details.cached_tokens == 0
    # The whole prompt is cached the second time: OpenAI's invariants hold...
    assert second.prompt_tokens == first.prompt_tokens
    assert second.prompt_tokens_details.cached_tokens == second.prompt_tokens
    assert second.total_tokens == second.prompt_tokens + second.completion_tokens
    # ...and only what Sber bills is charged (RUB 1.95 per 1K, completion only).
    assert costs[1] == pytest.approx(1.95 * second.completion_tokens / 1000)
    assert costs[0] == pytest.approx(1.95 * (first.prompt_tokens + first.completion_tokens) / 1000)


def test_session_id_from_user_and_bad_session_ids(
    giga: LiveGateway, emulator: RunningEmulator
) -> None:
    client = giga.client()
    messages: Any = [{"role": "user", "content": "first question"}]
    client.chat.completions.create(model="gigachat/max", messages=messages, user="alice")
    derived = last_chat_request(emulator)["headers"]["x-session-id"]
    assert derived.startswith("alice:")
    # The next turn of the same conversation keeps the id.
    client.chat.completions.create(
        model="gigachat/max",
        messages=[
            *messages,
            {"role": "assistant", "content": "x"},
            {"role": "user", "content": "y"},
        ],
        user="alice",
    )
    assert last_chat_request(emulator)["headers"]["x-session-id"] == derived
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="gigachat/max", messages=messages, extra_headers={"X-Session-ID": "no spaces"}
        )
    assert caught.value.body["param"] == "X-Session-ID"  # type: ignore[index]


def generation_cost(gateway: LiveGateway, generation_id: str) -> float:
    """The billed cost of one request, from its usage record."""
    from routing.models import UsageRecord
    from routing.usage import records

    sink = records.stream_sink()
    if sink is not None:
        while sink.consume_once(block_ms=10):
            pass
    records.flush_all()
    return float(UsageRecord.objects.get(generation_id=generation_id).cost_rub)
