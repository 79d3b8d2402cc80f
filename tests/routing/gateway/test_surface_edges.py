"""The new surfaces share chat's hot path, edges included.

``/v1/responses``, ``/v1/messages`` (+ ``count_tokens``) and
``/v1/completions`` refuse bad input in their own dialect with chat's
statuses; they carry the gateway's generation id; the team's data policy
and PII guardrail apply to them; and a stream that breaks after its first
byte ends with the surface's own error event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import requests

from accounts.models import Team
from keys.services import api_key_revoke
from tests.conftest import LiveGateway, openai_catalog
from tests.hostile_upstream import HostileUpstream, Reply, hostile_upstream

Body = Callable[[str], dict[str, Any]]

# path, a minimal valid body for a model, the error dialect.
SURFACES: dict[str, tuple[str, Body, str]] = {
    "chat": (
        "/v1/chat/completions",
        lambda m: {"model": m, "messages": [{"role": "user", "content": "hi"}]},
        "openai",
    ),
    "responses": ("/v1/responses", lambda m: {"model": m, "input": "hi"}, "openai"),
    "completions": ("/v1/completions", lambda m: {"model": m, "prompt": "hi"}, "openai"),
    "messages": (
        "/v1/messages",
        lambda m: {"model": m, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]},
        "anthropic",
    ),
    "count_tokens": (
        "/v1/messages/count_tokens",
        lambda m: {"model": m, "messages": [{"role": "user", "content": "hi"}]},
        "anthropic",
    ),
}
NEW = ["responses", "completions", "messages", "count_tokens"]
GENERATING = ["responses", "completions", "messages"]
MISSING = "missing_required_parameter"
# The parameter that bounds the answer, per surface.
MAX_TOKENS = {
    "responses": "max_output_tokens",
    "completions": "max_tokens",
    "messages": "max_tokens",
}


def post(gateway: LiveGateway, surface: str, *, key: str | None = None, **kwargs: Any) -> Any:
    path = SURFACES[surface][0]
    headers = {
        "Authorization": f"Bearer {key or gateway.key}",
        "Content-Type": "application/json",
        "anthropic-version": "2023-06-01",
    }
    return requests.post(gateway.url + path, headers=headers, timeout=15, **kwargs)


def body(surface: str, model: str = "local/mock", **extra: Any) -> dict[str, Any]:
    return {**SURFACES[surface][1](model), **extra}


def error_of(response: requests.Response, surface: str) -> dict[str, Any]:
    """Return the error object, checking the surface's dialect on the way."""
    payload = response.json()
    if SURFACES[surface][2] == "anthropic":
        assert payload["type"] == "error", payload
        assert set(payload["error"]) == {"type", "message"}, payload
        return dict(payload["error"])
    assert set(payload) == {"error"}, payload
    assert {"message", "type", "code", "param"} <= set(payload["error"]), payload
    return dict(payload["error"])


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize("surface", NEW)
def test_malformed_json_is_a_400_in_the_surface_dialect(gateway: LiveGateway, surface: str) -> None:
    response = post(gateway, surface, data=b'{"model": "local/mock", "input": ')
    assert response.status_code == 400
    error = error_of(response, surface)
    assert "not valid JSON" in error["message"]
    if SURFACES[surface][2] == "anthropic":
        assert error["type"] == "invalid_request_error"
    else:
        assert error["code"] == "invalid_json"


@pytest.mark.parametrize("surface", ["responses", "completions", "messages"])
def test_a_wrong_type_is_a_400_naming_the_parameter(gateway: LiveGateway, surface: str) -> None:
    response = post(gateway, surface, json=body(surface, temperature="hot"))
    assert response.status_code == 400
    error = error_of(response, surface)
    assert "'temperature'" in error["message"]
    if SURFACES[surface][2] == "openai":
        assert error["param"] == "temperature"
        assert error["code"] == "invalid_type"


@pytest.mark.parametrize(
    ("surface", "tool", "param", "code"),
    [
        ("chat", {"type": "function", "function": {}}, "tools[0].function.name", MISSING),
        (
            "chat",
            {"type": "function", "function": {"name": "f", "parameters": "x"}},
            "tools[0].function.parameters",
            "invalid_type",
        ),
        ("responses", {"type": "function"}, "tools[0].name", MISSING),
        (
            "responses",
            {"type": "function", "name": "f", "parameters": ["x"]},
            "tools[0].parameters",
            "invalid_type",
        ),
        (
            "responses",
            {"type": "function", "name": "f", "strict": "yes"},
            "tools[0].strict",
            "invalid_type",
        ),
    ],
)
def test_a_bad_function_tool_names_its_field_in_the_surfaces_shape(
    gateway: LiveGateway, surface: str, tool: dict[str, Any], param: str, code: str
) -> None:
    """Chat nests the declaration under "function", Responses does not: each names its own path."""
    response = post(gateway, surface, json=body(surface, tools=[tool]))
    assert response.status_code == 400
    error = error_of(response, surface)
    assert error["param"] == param
    assert error["code"] == code


def test_a_responses_tool_with_null_parameters_takes_no_arguments(gateway: LiveGateway) -> None:
    tool = {"type": "function", "name": "now", "parameters": None}
    response = post(gateway, "responses", json=body("responses", tools=[tool]))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("surface", ["chat", *NEW])
def test_a_huge_body_is_a_413(gateway: LiveGateway, surface: str, settings: Any) -> None:
    settings.XROUTER_MAX_BODY_BYTES = 2048
    response = post(gateway, surface, json=body(surface, metadata={"pad": "x" * 4000}))
    assert response.status_code == 413
    error = error_of(response, surface)
    assert "larger than 2048 bytes" in error["message"]
    if SURFACES[surface][2] == "anthropic":
        assert error["type"] == "request_too_large"


@pytest.mark.parametrize("surface", NEW)
def test_an_unknown_model_is_a_404(gateway: LiveGateway, surface: str) -> None:
    response = post(gateway, surface, json=body(surface, "nobody/none"))
    assert response.status_code == 404
    error = error_of(response, surface)
    assert "'nobody/none' does not exist" in error["message"]
    if SURFACES[surface][2] == "anthropic":
        assert error["type"] == "not_found_error"
    else:
        assert error["code"] == "model_not_found"


@pytest.mark.parametrize("surface", NEW)
def test_a_revoked_key_is_a_401(gateway: LiveGateway, make_key: Any, surface: str) -> None:
    created = make_key()
    assert post(gateway, surface, key=created.plaintext, json=body(surface)).status_code == 200
    api_key_revoke(api_key=created.api_key)
    response = post(gateway, surface, key=created.plaintext, json=body(surface))
    assert response.status_code == 401
    error = error_of(response, surface)
    if SURFACES[surface][2] == "anthropic":
        assert error["type"] == "authentication_error"
    else:
        assert error["code"] == "invalid_api_key"


@pytest.mark.parametrize("surface", GENERATING)
def test_max_tokens_above_the_cap_is_a_400_naming_the_surfaces_parameter(
    gateway: LiveGateway, upstream_control: Any, surface: str
) -> None:
    param = MAX_TOKENS[surface]
    response = post(gateway, surface, json=body(surface, **{param: 2**63}))
    assert response.status_code == 400
    assert f"'{param}'" in error_of(response, surface)["message"]
    assert upstream_control.stats()["requests_total"] == 0


def test_context_length_bounds_max_output_tokens(
    gateway: LiveGateway, load_catalog: Any, upstream: Any, upstream_control: Any
) -> None:
    load_catalog(
        openai_catalog(upstream.base_url).replace(
            "upstream: gpt-mock", "upstream: gpt-mock\n    context_length: 4096"
        )
    )
    response = post(gateway, "responses", json=body("responses", max_output_tokens=5000))
    assert response.status_code == 400
    error = error_of(response, "responses")
    assert error["param"] == "max_output_tokens"
    assert "context of 4096 tokens" in error["message"]
    assert upstream_control.stats()["requests_total"] == 0


# --- generation ids ---------------------------------------------------------------------


@pytest.mark.parametrize("surface", ["completions", "messages"])
def test_the_answer_id_is_the_generation_id(gateway: LiveGateway, surface: str) -> None:
    response = post(gateway, surface, json=body(surface))
    assert response.status_code == 200
    generation = response.headers["X-Generation-Id"]
    assert generation.startswith("gen-")
    assert response.json()["id"] == generation


def _sse_payloads(response: requests.Response) -> list[Any]:
    return [
        orjson.loads(line[6:])
        for line in response.text.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


def test_streams_carry_the_generation_id(gateway: LiveGateway) -> None:
    streamed = post(gateway, "completions", json=body("completions", stream=True))
    ids = {event["id"] for event in _sse_payloads(streamed)}
    assert ids == {streamed.headers["X-Generation-Id"]}
    messages = post(gateway, "messages", json=body("messages", stream=True))
    start = _sse_payloads(messages)[0]
    assert start["type"] == "message_start"
    assert start["message"]["id"] == messages.headers["X-Generation-Id"]
    responses = post(gateway, "responses", json=body("responses", stream=True))
    assert responses.headers["X-Generation-Id"].startswith("gen-")


def test_a_client_chosen_request_id_is_never_the_answer_id(gateway: LiveGateway) -> None:
    path = SURFACES["messages"][0]
    response = requests.post(
        gateway.url + path,
        headers={**gateway.headers, "X-Request-ID": "mine-123"},
        json=body("messages"),
        timeout=10,
    )
    assert response.headers["X-Request-ID"] == "mine-123"
    assert "mine-123" not in response.json()["id"]


# --- data policy and PII ---------------------------------------------------------------------

RESIDENCY = """
providers:
  - {{name: abroad, kind: openai, base_url: "{url}/v1", api_key_env: TEST_UPSTREAM_KEY,
      data_region: us}}
  - {{name: ru-zero, kind: openai, base_url: "{url}/v1", api_key_env: TEST_UPSTREAM_KEY,
      data_region: ru, stores_prompts: false}}
models:
  - id: foreign/gpt
    provider: abroad
    upstream: gpt-mock
  - id: ru/mixed
    deployments:
      - {{provider: abroad, upstream: gpt-mock, priority: 0}}
      - {{provider: ru-zero, upstream: gpt-mock, priority: 1}}
"""


def _team(**fields: Any) -> None:
    team = Team.objects.get(slug="acme")
    for name, value in fields.items():
        setattr(team, name, value)
    team.save()


@pytest.mark.parametrize("surface", NEW)
def test_the_data_policy_refuses_on_every_surface_with_chats_status(
    gateway: LiveGateway, load_catalog: Any, upstream: Any, upstream_control: Any, surface: str
) -> None:
    load_catalog(RESIDENCY.format(url=upstream.base_url))
    _team(data_policy="ru_only")
    chat = post(gateway, "chat", json=body("chat", "foreign/gpt"))
    refused = post(gateway, surface, json=body(surface, "foreign/gpt"))
    assert refused.status_code == chat.status_code == 403
    assert refused.headers["x-xrouter-attempts"] == "abroad:skipped(data_region=us)"
    error = error_of(refused, surface)
    assert "'ru_only'" in error["message"]
    if SURFACES[surface][2] == "anthropic":
        assert error["type"] == "permission_error"
    else:
        assert error["code"] == "data_policy_violation"
    served = post(gateway, surface, json=body(surface, "ru/mixed"))
    assert served.status_code == 200, served.content
    assert served.headers["x-xrouter-attempts"] == "abroad:skipped(data_region=us), ru-zero:200"
    # Only the two count_tokens/served calls reached an upstream, never abroad.
    assert upstream_control.stats()["requests_total"] == (0 if surface == "count_tokens" else 1)


@pytest.mark.parametrize("surface", ["responses", "messages"])
def test_data_collection_deny_is_a_preference_on_the_new_surfaces(
    gateway: LiveGateway, load_catalog: Any, upstream: Any, surface: str
) -> None:
    load_catalog(RESIDENCY.format(url=upstream.base_url))
    response = post(
        gateway, surface, json=body(surface, "ru/mixed", provider={"data_collection": "deny"})
    )
    assert response.status_code == 200, response.content
    assert response.headers["x-xrouter-attempts"] == "abroad:skipped(stores_prompts), ru-zero:200"


PII = "Мой паспорт 4506 123456, почта petrov@mail.ru"


def _content(surface: str, text: str) -> dict[str, Any]:
    if surface == "responses":
        return {"input": text}
    if surface == "completions":
        return {"prompt": text}
    return {"messages": [{"role": "user", "content": text}]}


@pytest.mark.parametrize("surface", ["chat", *NEW])
def test_pii_block_refuses_every_surface_before_the_upstream(
    gateway: LiveGateway, upstream_control: Any, surface: str
) -> None:
    _team(pii_mode="block")
    response = post(gateway, surface, json=body(surface, **_content(surface, PII)))
    assert response.status_code == 400
    error = error_of(response, surface)
    assert "passport" in error["message"]
    assert "4506" not in response.text
    assert upstream_control.stats()["requests_total"] == 0


@pytest.mark.parametrize("surface", GENERATING)
def test_pii_redact_hides_values_from_the_upstream_and_restores_them(
    gateway: LiveGateway, upstream_control: Any, surface: str
) -> None:
    _team(pii_mode="redact")
    response = post(gateway, surface, json=body(surface, **_content(surface, PII)))
    assert response.status_code == 200, response.content
    sent = orjson.dumps(upstream_control.stats()["last_request"]["json"]).decode()
    assert "4506 123456" not in sent and "petrov@mail.ru" not in sent
    # The emulator echoes the prompt: the client gets its own values back.
    assert "4506 123456" in response.text and "petrov@mail.ru" in response.text


# --- streams that break after the first byte ---------------------------------------------

CHUNK = {
    "id": "chatcmpl-hostile",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "gpt-mock",
    "choices": [{"index": 0, "delta": {"content": "partial "}, "finish_reason": None}],
}


@pytest.fixture
def hostile(
    live_server: Any, transactional_db: None, load_catalog: Any, make_key: Any
) -> Iterator[tuple[HostileUpstream, LiveGateway]]:
    with hostile_upstream() as upstream:
        load_catalog(openai_catalog(upstream.base_url))
        yield upstream, LiveGateway(live_server.url, make_key().plaintext)


def _named_events(response: requests.Response) -> list[tuple[str, Any]]:
    """Return (event name or "", payload) pairs of an SSE body."""
    events: list[tuple[str, Any]] = []
    name = ""
    for line in response.text.splitlines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
            events.append((name, data if data == "[DONE]" else orjson.loads(data)))
            name = ""
    return events


@pytest.mark.parametrize("surface", GENERATING)
def test_an_unreadable_event_mid_stream_ends_with_the_surfaces_error_event(
    hostile: tuple[HostileUpstream, LiveGateway], surface: str
) -> None:
    upstream, gateway = hostile
    upstream.reply = Reply(
        stream=[
            b"data: " + orjson.dumps(CHUNK) + b"\n\n",
            b'data: {"id": "chatcmpl-hostile", "choices": 7}\n\n',
            b"data: " + orjson.dumps(CHUNK) + b"\n\n",
        ]
    )
    response = post(gateway, surface, json=body(surface, stream=True))
    assert response.status_code == 200
    events = _named_events(response)
    names = [name for name, _payload in events]
    if surface == "completions":
        assert events[0][1]["choices"][0]["text"] == "partial "
        assert events[-1][1]["error"]["code"] == "upstream_bad_response"
        assert "[DONE]" not in [payload for _name, payload in events]
    elif surface == "messages":
        assert names[0] == "message_start"
        assert names[-1] == "error"
        assert events[-1][1]["error"]["type"] == "api_error"
        assert "stream event" in events[-1][1]["error"]["message"]
        assert "message_stop" not in names
    else:
        assert names[0] == "response.created"
        assert names[-2:] == ["error", "response.failed"]
        assert events[-2][1]["code"] == "upstream_bad_response"
        failed = events[-1][1]["response"]
        assert failed["status"] == "failed"
        assert failed["error"]["code"] == "upstream_bad_response"
        assert "response.completed" not in names
