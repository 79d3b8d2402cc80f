"""The PII guardrail through the gateway, against an upstream that records
everything it receives: the provider never sees the PII, the client gets
its own values back, plain and streamed; ``block`` refuses with
``pii_detected``; usage records and logs keep counts by kind only."""

from __future__ import annotations

import json
import logging
from typing import Any

import orjson
import pytest
import requests

from accounts.models import Team
from keys.models import ApiKey
from routing.models import UsageRecord
from routing.usage import records as usage
from tests.conftest import LiveGateway

PROMPT = (
    "Оформите полис: Иванов Пётр, паспорт 4506 123456, СНИЛС 112-233-445 95, "
    "ИНН 500100732259, телефон +7 (916) 123-45-67, почта petrov@mail.ru, "
    "карта 2202 2012 3456 7895"
)
VALUES = (
    "4506 123456",
    "123456",
    "112-233-445 95",
    "500100732259",
    "+7 (916) 123-45-67",
    "123-45-67",
    "petrov@mail.ru",
    "2202 2012 3456 7895",
    "7895",
)
COUNTS = {"passport": 1, "snils": 1, "inn": 1, "phone": 1, "email": 1, "card": 1}


def _mode(mode: str) -> None:
    team = Team.objects.get(slug="acme")
    team.pii_mode = mode
    team.save()


def _upstream_saw(control: Any) -> str:
    """Everything the upstream received, as one text."""
    return json.dumps(control.stats()["recent_requests"], ensure_ascii=False)


def _usage_rows() -> list[UsageRecord]:
    sink = usage.stream_sink()
    if sink is not None:
        while sink.consume_once(block_ms=10):
            pass
    usage.flush_all()
    return list(UsageRecord.objects.order_by("created_at"))


def chat(gateway: LiveGateway, **body: Any) -> requests.Response:
    body.setdefault("model", "local/mock")
    body.setdefault("messages", [{"role": "user", "content": PROMPT}])
    return requests.post(
        gateway.url + "/v1/chat/completions", headers=gateway.headers, json=body, timeout=10
    )


def test_redact_hides_pii_from_the_provider_and_restores_it_for_the_client(
    gateway: LiveGateway, upstream_control: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _mode("redact")
    with caplog.at_level(logging.INFO, logger="xrouter.access"):
        response = chat(gateway)
    assert response.status_code == 200, response.content
    saw = _upstream_saw(upstream_control)
    assert upstream_control.stats()["requests_total"] == 1
    for value in VALUES:
        assert value not in saw
    for placeholder in (
        "[PASSPORT_1]",
        "[SNILS_1]",
        "[INN_1]",
        "[PHONE_1]",
        "[EMAIL_1]",
        "[CARD_1]",
    ):
        assert placeholder in saw
    # The emulator echoes the prompt: the client reads its own data back.
    content = response.json()["choices"][0]["message"]["content"]
    assert content == "Ответ: Echo: " + PROMPT
    [row] = _usage_rows()
    assert row.pii_counts == COUNTS
    record = json.dumps(
        [row.attempts, row.pii_counts, row.error_code, row.requested_model], ensure_ascii=False
    )
    assert not any(value in record for value in VALUES)
    [line] = [r for r in caplog.records if r.name == "xrouter.access"]
    assert line.pii == COUNTS  # type: ignore[attr-defined]
    logged = json.dumps(line.__dict__, default=str, ensure_ascii=False)
    assert not any(value in logged for value in VALUES)


def test_redact_restores_a_streamed_answer(gateway: LiveGateway, upstream_control: Any) -> None:
    _mode("redact")
    # Many small chunks, so placeholders are split across them.
    upstream_control.set_config(stream_tokens=40)
    with requests.post(
        gateway.url + "/v1/chat/completions",
        headers=gateway.headers,
        json={
            "model": "local/mock",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": PROMPT}],
        },
        timeout=10,
        stream=True,
    ) as response:
        assert response.status_code == 200
        events = [
            line[len(b"data: ") :]
            for line in response.iter_lines()
            if line.startswith(b"data: ") and line != b"data: [DONE]"
        ]
    pieces = [
        choice["delta"].get("content") or ""
        for event in events
        for choice in orjson.loads(event)["choices"]
    ]
    assert "".join(pieces) == "Ответ: Echo: " + PROMPT
    saw = _upstream_saw(upstream_control)
    assert not any(value in saw for value in VALUES)
    [row] = _usage_rows()
    assert row.pii_counts == COUNTS and row.stream_complete is True


def test_redact_covers_tool_arguments_and_tool_results(
    gateway: LiveGateway, upstream_control: Any
) -> None:
    _mode("redact")
    messages = [
        {"role": "user", "content": "Найди контрагента"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"inn": 7707083893}'},
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "call_1",
            "content": "ОГРН 1027700132195, тел. 8 800 555-35-35",
        },
    ]
    response = chat(gateway, messages=messages)
    assert response.status_code == 200, response.content
    saw = _upstream_saw(upstream_control)
    for value in ("7707083893", "1027700132195", "8 800 555-35-35"):
        assert value not in saw
    sent = upstream_control.stats()["last_request"]["json"]["messages"]
    assert orjson.loads(sent[1]["tool_calls"][0]["function"]["arguments"]) == {"inn": "[INN_1]"}
    # The emulator answers "Tool result: <tool content>": restored for the client.
    assert response.json()["choices"][0]["message"]["content"] == (
        "Ответ: Tool result: ОГРН 1027700132195, тел. 8 800 555-35-35"
    )


def test_block_refuses_with_pii_detected_naming_kinds_only(
    gateway: LiveGateway, upstream_control: Any
) -> None:
    _mode("block")
    response = chat(gateway)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "pii_detected"
    assert error["type"] == "invalid_request_error"
    assert "card, email, inn, passport, phone, snils" in error["message"]
    assert not any(value in response.text for value in VALUES)
    assert upstream_control.stats()["requests_total"] == 0
    [row] = _usage_rows()
    assert (row.status, row.error_code, row.pii_counts) == (400, "pii_detected", COUNTS)
    # Text without personal data goes through.
    clean = chat(gateway, messages=[{"role": "user", "content": "Сколько будет 2+2?"}])
    assert clean.status_code == 200


def test_a_key_can_be_stricter_than_its_team(gateway: LiveGateway, upstream_control: Any) -> None:
    key = ApiKey.objects.get(team__slug="acme")
    key.pii_mode = "block"
    key.save()
    assert chat(gateway).json()["error"]["code"] == "pii_detected"
    key.pii_mode = ""
    key.save()
    assert chat(gateway).status_code == 200
    # Mode off: the prompt goes upstream as the client sent it.
    assert "petrov@mail.ru" in _upstream_saw(upstream_control)


def test_embeddings_are_redacted_and_blocked_too(
    gateway: LiveGateway, upstream_control: Any
) -> None:
    _mode("redact")
    response = requests.post(
        gateway.url + "/v1/embeddings",
        headers=gateway.headers,
        json={"model": "local/embed", "input": ["телефон 89161234567", "привет"]},
        timeout=10,
    )
    assert response.status_code == 200
    assert upstream_control.stats()["last_request"]["json"]["input"] == [
        "телефон [PHONE_1]",
        "привет",
    ]
    _mode("block")
    response = requests.post(
        gateway.url + "/v1/embeddings",
        headers=gateway.headers,
        json={"model": "local/embed", "input": "телефон 89161234567"},
        timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "pii_detected"
