"""Every bad input gets OpenAI's error shape with the right status and param."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import requests

from keys.services import api_key_revoke
from tests.conftest import LiveGateway

CHAT = "/v1/chat/completions"
GOOD = {"model": "local/mock", "messages": [{"role": "user", "content": "hi"}]}


def post(gateway: LiveGateway, path: str, body: Any, **kwargs: Any) -> requests.Response:
    headers = {**gateway.headers, **kwargs.pop("headers", {})}
    data = body if isinstance(body, bytes | str) else orjson.dumps(body)
    return requests.post(gateway.url + path, data=data, headers=headers, timeout=10, **kwargs)


def assert_error(
    response: requests.Response, status: int, code: str, param: str | None = None
) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["X-Request-ID"]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert error["param"] == param
    assert error["message"]


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        (b"{not json", "invalid_json", None),
        (b"", "invalid_json", None),
        (b"[1, 2]", "invalid_json", None),
        ({"messages": [{"role": "user", "content": "x"}]}, "missing_required_parameter", "model"),
        ({"model": 42, "messages": []}, "invalid_type", "model"),
        ({"model": "local/mock"}, "missing_required_parameter", "messages"),
        ({"model": "local/mock", "messages": "hi"}, "invalid_type", "messages"),
        ({"model": "local/mock", "messages": []}, "invalid_value", "messages"),
        (
            {"model": "local/mock", "messages": [{"content": "x"}]},
            "missing_required_parameter",
            "messages[0].role",
        ),
        (
            {"model": "local/mock", "messages": [{"role": "wizard", "content": "x"}]},
            "invalid_value",
            "messages[0].role",
        ),
        (
            {"model": "local/mock", "messages": [{"role": "user", "content": 5}]},
            "invalid_type",
            "messages[0].content",
        ),
        (
            {"model": "local/mock", "messages": [{"role": "user"}]},
            "missing_required_parameter",
            "messages[0].content",
        ),
        (
            {"model": "local/mock", "messages": [{"role": "tool", "content": "x"}]},
            "missing_required_parameter",
            "messages[0].tool_call_id",
        ),
        ({**GOOD, "temperature": "hot"}, "invalid_type", "temperature"),
        ({**GOOD, "temperature": 2.5}, "invalid_value", "temperature"),
        ({**GOOD, "top_p": True}, "invalid_type", "top_p"),
        ({**GOOD, "max_tokens": 0}, "invalid_value", "max_tokens"),
        ({**GOOD, "max_tokens": 1.5}, "invalid_type", "max_tokens"),
        ({**GOOD, "stream": "yes"}, "invalid_type", "stream"),
        ({**GOOD, "stream_options": {"include_usage": True}}, "invalid_value", "stream_options"),
        ({**GOOD, "n": 3}, "invalid_value", "n"),
        ({**GOOD, "stop": ["a", "b", "c", "d", "e"]}, "invalid_value", "stop"),
        ({**GOOD, "stop": 7}, "invalid_type", "stop"),
        ({**GOOD, "tools": [{"type": "function"}]}, "invalid_type", "tools[0].function"),
        ({**GOOD, "tool_choice": "sometimes"}, "invalid_value", "tool_choice"),
        ({**GOOD, "response_format": {"type": "yaml"}}, "invalid_value", "response_format.type"),
    ],
)
def test_bad_chat_bodies(gateway: LiveGateway, body: Any, code: str, param: str | None) -> None:
    assert_error(post(gateway, CHAT, body), 400, code, param)


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"model": "local/embed"}, "missing_required_parameter", "input"),
        ({"model": "local/embed", "input": 5}, "invalid_type", "input"),
        ({"model": "local/embed", "input": []}, "invalid_type", "input"),
        ({"model": "local/embed", "input": [[1, 2]]}, "invalid_value", "input"),
        ({"model": "local/embed", "input": [""]}, "invalid_value", "input"),
        (
            {"model": "local/embed", "input": "x", "encoding_format": "hex"},
            "invalid_value",
            "encoding_format",
        ),
        ({"model": "local/mock", "input": "x"}, "unsupported_operation", "model"),
    ],
)
def test_bad_embedding_bodies(
    gateway: LiveGateway, body: Any, code: str, param: str | None
) -> None:
    assert_error(post(gateway, "/v1/embeddings", body), 400, code, param)


def test_chat_model_used_for_embeddings_is_refused_the_other_way(gateway: LiveGateway) -> None:
    response = post(gateway, CHAT, {**GOOD, "model": "local/embed"})
    assert_error(response, 400, "unsupported_operation", "model")


def test_unknown_model(gateway: LiveGateway) -> None:
    assert_error(
        post(gateway, CHAT, {**GOOD, "model": "x/unknown"}), 404, "model_not_found", "model"
    )


def test_body_over_the_limit_is_413_without_reading_it(gateway: LiveGateway, settings: Any) -> None:
    settings.XROUTER_MAX_BODY_BYTES = 1024
    big = {**GOOD, "messages": [{"role": "user", "content": "x" * 2000}]}
    assert_error(post(gateway, CHAT, big), 413, "request_too_large")


def test_wrong_content_type_is_415(gateway: LiveGateway) -> None:
    response = post(
        gateway, CHAT, "model=x", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", CHAT), ("PUT", "/v1/embeddings"), ("DELETE", "/v1/models"), ("POST", "/v1/models")],
)
def test_wrong_method_is_405(gateway: LiveGateway, method: str, path: str) -> None:
    response = requests.request(method, gateway.url + path, headers=gateway.headers, timeout=10)
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["Allow"]


def test_unknown_path_is_404_json(gateway: LiveGateway) -> None:
    response = requests.get(gateway.url + "/v1/nothing-here", headers=gateway.headers, timeout=10)
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer not-a-key",
        "Bearer xr_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ],
)
def test_missing_or_invalid_key_is_401(gateway: LiveGateway, authorization: str | None) -> None:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = requests.post(
        gateway.url + CHAT, data=orjson.dumps(GOOD), headers=headers, timeout=10
    )
    assert_error(response, 401, "invalid_api_key")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_key_in_the_query_string_is_not_accepted(gateway: LiveGateway) -> None:
    response = requests.post(
        gateway.url + CHAT + f"?api_key={gateway.key}",
        data=orjson.dumps(GOOD),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert_error(response, 401, "invalid_api_key")


def test_revoked_key_is_401(gateway: LiveGateway, make_key: Any) -> None:
    created = make_key()
    headers = {"Authorization": f"Bearer {created.plaintext}"}
    assert requests.get(gateway.url + "/v1/models", headers=headers, timeout=10).status_code == 200
    api_key_revoke(api_key=created.api_key)
    response = requests.get(gateway.url + "/v1/models", headers=headers, timeout=10)
    assert_error(response, 401, "invalid_api_key")


def test_expired_key_is_401(gateway: LiveGateway, make_key: Any) -> None:
    import time
    from datetime import timedelta

    from django.utils import timezone

    expires_at = timezone.now() + timedelta(seconds=1)
    created = make_key(expires_at=expires_at)
    headers = {"Authorization": f"Bearer {created.plaintext}"}
    assert requests.get(gateway.url + "/v1/models", headers=headers, timeout=10).status_code == 200
    # The expiry is what is under test: let the key's moment pass, no longer.
    time.sleep(max(0.0, (expires_at - timezone.now()).total_seconds()) + 0.05)
    assert_error(
        requests.get(gateway.url + "/v1/models", headers=headers, timeout=10),
        401,
        "invalid_api_key",
    )


def test_request_id_is_echoed_when_sane_and_replaced_when_not(gateway: LiveGateway) -> None:
    sane = requests.get(
        gateway.url + "/v1/models",
        headers={**gateway.headers, "X-Request-ID": "abc-123.x:y"},
        timeout=10,
    )
    assert sane.headers["X-Request-ID"] == "abc-123.x:y"
    for bad in ["x" * 200, "has space", "new\\nline"]:
        replaced = requests.get(
            gateway.url + "/v1/models", headers={**gateway.headers, "X-Request-ID": bad}, timeout=10
        )
        assert replaced.headers["X-Request-ID"] != bad
        assert len(replaced.headers["X-Request-ID"]) == 32


def test_dead_upstream_is_502(gateway: LiveGateway, load_catalog: Any) -> None:
    from tests.gateway_process import free_port

    load_catalog(f"""
providers:
  - {{name: dead, kind: openai, base_url: "http://127.0.0.1:{free_port()}/v1"}}
models:
  - {{id: dead/model, provider: dead, upstream: m}}
""")
    response = post(gateway, CHAT, {**GOOD, "model": "dead/model"})
    assert_error(response, 502, "upstream_unreachable")


def test_provider_without_its_credential_is_503(gateway: LiveGateway, monkeypatch: Any) -> None:
    from routing.table import reset_table

    monkeypatch.delenv("TEST_UPSTREAM_KEY")
    reset_table()
    response = post(gateway, CHAT, GOOD)
    assert_error(response, 503, "service_unavailable")
    assert "TEST_UPSTREAM_KEY" not in response.text


def test_upstream_error_text_is_sanitised(gateway: LiveGateway, upstream_control: Any) -> None:
    upstream_control.set_config(fault="http_400")
    response = post(gateway, CHAT, GOOD)
    assert response.status_code == 400
    assert "upstream-secret-for-tests" not in response.text
