"""Request bodies and parameters are bounded; API answers are never cached."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import requests
from django.test import Client

from keys.services import CreatedKey
from tests.conftest import openai_catalog
from tests.gateway_process import running_gateway

CONTEXT_CATALOG = """
providers:
  - name: local
    kind: openai
    base_url: {base_url}/v1
    api_key_env: TEST_UPSTREAM_KEY
models:
  - id: local/small
    provider: local
    upstream: gpt-mock
    context_length: 4096
"""


def _chunked(url: str, key: str, body: bytes, piece: int = 100) -> tuple[int, bytes]:
    """POST ``body`` with Transfer-Encoding: chunked (requests does, for a generator)."""
    response = requests.post(
        url + "/v1/chat/completions",
        data=(body[i : i + piece] for i in range(0, len(body), piece)),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert "Content-Length" not in response.request.headers
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    return response.status_code, response.content


@pytest.mark.slow
def test_chunked_bodies_are_read_and_still_bounded(
    transactional_db: None, load_catalog: Any, upstream: Any, make_key: Any
) -> None:
    """No Content-Length: the body is read whole; over the cap it is a 413."""
    load_catalog(openai_catalog(upstream.base_url))
    key: CreatedKey = make_key()
    small = orjson.dumps({"model": "local/mock", "messages": [{"role": "user", "content": "hi"}]})
    large = orjson.dumps(
        {"model": "local/mock", "messages": [{"role": "user", "content": "x" * 5000}]}
    )
    with running_gateway(workers=1, env={"XROUTER_MAX_BODY_BYTES": "2048"}) as gateway:
        status, body = _chunked(gateway.url, key.plaintext, small)
        assert status == 200, body
        assert orjson.loads(body)["choices"][0]["message"]["content"]
        status, body = _chunked(gateway.url, key.plaintext, large)
    assert status == 413, body
    assert b"larger than 2048 bytes" in body


@pytest.fixture
def key(db: None, load_catalog: Any, upstream: Any, make_key: Any) -> str:
    load_catalog(openai_catalog(upstream.base_url) + CONTEXT_CATALOG.split("models:", 1)[1])
    return str(make_key().plaintext)


def _post(key: str, **body: Any) -> Any:
    payload = {"messages": [{"role": "user", "content": "hi"}], **body}
    return Client().post(
        "/v1/chat/completions",
        data=orjson.dumps(payload),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )


@pytest.mark.parametrize("param", ["max_tokens", "max_completion_tokens"])
def test_absurd_max_tokens_is_a_clear_400(key: str, param: str) -> None:
    """2^64-1 is refused before any limit or upstream sees it."""
    response = _post(key, model="local/mock", **{param: 2**64 - 1})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": f"Invalid value for '{param}': must be between 1 and 262144, got {2**64 - 1}.",
        "type": "invalid_request_error",
        "param": param,
        "code": "invalid_value",
    }


def test_max_tokens_above_the_models_context_is_a_clear_400(key: str) -> None:
    response = _post(key, model="local/small", max_tokens=5000)
    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": "Invalid value for 'max_tokens': the model 'local/small' has a context "
        "of 4096 tokens, so it cannot produce 5000.",
        "type": "invalid_request_error",
        "param": "max_tokens",
        "code": "invalid_value",
    }


def test_every_v1_answer_says_no_store(key: str) -> None:
    """Served, refused, streamed and listed answers: no cache may keep them."""
    answers = [
        _post(key, model="local/mock"),
        _post(key, model="local/mock", stream=True),
        _post(key, model="local/missing"),
        Client().get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {key}"),
        Client().get("/v1/models"),
    ]
    assert [a.status_code for a in answers] == [200, 200, 404, 200, 401]
    for answer in answers:
        assert answer["Cache-Control"] == "no-store"
        assert answer["X-Generation-Id"].startswith("gen-")
