"""The OpenAPI schema documents the ``/v1/`` gateway and the key exchange."""

from __future__ import annotations

from typing import Any

from django.test import Client


def schema(client: Client) -> Any:
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def test_every_gateway_operation_is_documented(client: Client) -> None:
    paths = schema(client)["paths"]
    expected = {
        "/v1/chat/completions": {"post"},
        "/v1/completions": {"post"},
        "/v1/embeddings": {"post"},
        "/v1/responses": {"post"},
        "/v1/responses/{id}": {"get", "delete"},
        "/v1/messages": {"post"},
        "/v1/messages/count_tokens": {"post"},
        "/v1/models": {"get"},
        "/v1/models/{model_id}": {"get"},
        "/api/v1/auth/keys": {"post"},
        "/api/v1/key": {"get"},
        "/api/v1/credits": {"get"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path


def test_request_bodies_name_openrouter_and_openai_fields(client: Client) -> None:
    document = schema(client)
    schemas = document["components"]["schemas"]
    exchange = schemas["KeyExchangeRequest"]
    assert exchange["required"] == ["code", "code_verifier"]
    assert exchange["properties"]["code_challenge_method"]["enum"] == ["S256"]
    preferences = schemas["ProviderPreferences"]["properties"]
    assert set(preferences) == {
        "order",
        "only",
        "ignore",
        "allow_fallbacks",
        "sort",
        "max_price",
        "require_parameters",
    }
    assert preferences["sort"]["enum"] == ["price", "latency", "throughput"]
    responses = schemas["ResponseCreateRequest"]["properties"]
    assert {"input", "previous_response_id", "store", "text", "reasoning"} <= set(responses)
    messages = document["paths"]["/v1/messages"]["post"]
    assert messages["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AnthropicError"
    }
    assert {"anthropicKey": []} in messages["security"]


def test_docs_page_serves(client: Client) -> None:
    assert client.get("/api/docs/").status_code == 200
