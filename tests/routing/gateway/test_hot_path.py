"""The hot path stays lean: no database on a warm request, one log line."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
from django.test import Client

from tests.conftest import openai_catalog
from xrouter_site.logging import JsonFormatter, RedactSecretsFilter

BODY = {"model": "local/mock", "messages": [{"role": "user", "content": "секретный промпт 42"}]}


@pytest.fixture
def client_and_key(
    db: None, load_catalog: Any, make_key: Any, upstream_control: Any, upstream: Any
) -> tuple[Client, str]:
    load_catalog(openai_catalog(upstream.base_url))
    return Client(), make_key().plaintext


def _post(client: Client, key: str, body: dict[str, Any]) -> Any:
    return client.post(
        "/v1/chat/completions",
        data=orjson.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )


def test_warm_proxied_request_runs_no_query(
    client_and_key: tuple[Client, str], django_assert_num_queries: Any
) -> None:
    client, key = client_and_key
    assert _post(client, key, BODY).status_code == 200  # warms key cache and table
    with django_assert_num_queries(0):
        response = _post(client, key, BODY)
    assert response.status_code == 200
    with django_assert_num_queries(0):
        stream = _post(client, key, {**BODY, "stream": True})
        b"".join(stream.streaming_content)


def test_warm_models_list_runs_no_query(
    client_and_key: tuple[Client, str], django_assert_num_queries: Any
) -> None:
    client, key = client_and_key
    client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {key}")
    with django_assert_num_queries(0):
        assert client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200


def test_one_json_access_line_without_secrets_or_prompt(
    client_and_key: tuple[Client, str],
) -> None:
    client, key = client_and_key
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Collect()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecretsFilter())
    access = logging.getLogger("xrouter.access")
    access.addHandler(handler)
    try:
        response = _post(client, key, BODY)
    finally:
        access.removeHandler(handler)
    assert len(records) == 1
    line = orjson.loads(records[0])
    assert line["request_id"] == response["X-Request-ID"]
    assert (line["status"], line["model"], line["provider"], line["team"]) == (
        200,
        "local/mock",
        "local",
        "acme",
    )
    assert line["key_prefix"] == key[:12]
    assert line["prompt_tokens"] > 0 and line["completion_tokens"] > 0
    assert line["latency_ms"] >= line["upstream_ms"] > 0
    assert key not in records[0] and key[12:] not in records[0]
    assert "секретный" not in records[0]


def test_redaction_masks_credentials_everywhere() -> None:
    from keys.tokens import generate
    from xrouter_site.logging import redact

    key = generate().plaintext
    text = f"key={key} header=Bearer abc.def token=t1.{'x' * 30} api=Api-Key AQVN{'y' * 30}"
    masked = redact(text)
    for secret in (key, "abc.def", "t1." + "x" * 30, "AQVN" + "y" * 30):
        assert secret not in masked
    assert redact({"Authorization": "anything", "nested": [key]}) == {
        "Authorization": "[redacted]",
        "nested": ["[redacted]"],
    }


def test_a_stream_response_closed_before_it_started_still_cleans_up(db: None) -> None:
    # close() sends request_finished, whose receiver checks the open database connection.
    from routing.gateway.relay import RelayResponse

    calls: list[str] = []

    def never_started() -> Any:
        calls.append("started")
        yield b"data: x\n\n"

    response = RelayResponse(
        never_started(),
        content_type="text/event-stream",
        on_close=(lambda: calls.append("upstream closed"), lambda: calls.append("finished")),
    )
    response.close()
    assert calls == ["upstream closed", "finished"]
