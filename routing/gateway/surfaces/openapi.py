"""The ``/v1/`` API in the OpenAPI schema (``/api/schema/``, ``/api/docs/``).

The gateway's views are plain Django behind the first middleware, so
drf-spectacular cannot discover them; this post-processing hook adds their
operations and components, written by hand from the validators in
``routing.gateway.validation`` and ``routing.gateway.surfaces``. Request schemas allow extra
properties: unknown fields are ignored, as OpenAI's API does.
"""

from __future__ import annotations

from typing import Any

JSON = "application/json"
SSE = "text/event-stream"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(
    properties: dict[str, Any], required: tuple[str, ...] = (), **extra: Any
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, **extra}
    if required:
        schema["required"] = list(required)
    return schema


_STR = {"type": "string"}
_INT = {"type": "integer"}
_NUM = {"type": "number"}
_BOOL = {"type": "boolean"}
_ANY_OBJ = {"type": "object", "additionalProperties": True}
_STRINGS = {"type": "array", "items": _STR}

_ROUTING = {
    "models": {
        **_STRINGS,
        "description": "Models to fall back to, in order, after the requested one.",
    },
    "provider": _ref("ProviderPreferences"),
}

SCHEMAS: dict[str, Any] = {
    "OpenAIError": _obj(
        {
            "error": _obj(
                {
                    "message": _STR,
                    "type": _STR,
                    "param": {"type": "string", "nullable": True},
                    "code": _STR,
                },
                ("message", "type", "code"),
            )
        },
        ("error",),
    ),
    "AnthropicError": _obj(
        {
            "type": {"type": "string", "enum": ["error"]},
            "error": _obj({"type": _STR, "message": _STR}, ("type", "message")),
        },
        ("type", "error"),
    ),
    "ProviderPreferences": _obj(
        {
            "order": {**_STRINGS, "description": "Providers to try first, in this order."},
            "only": {**_STRINGS, "description": "Use no other provider."},
            "ignore": {**_STRINGS, "description": "Never use these providers."},
            "allow_fallbacks": {
                **_BOOL,
                "default": True,
                "description": "false: only the providers in `order` (or the first choice).",
            },
            "sort": {"type": "string", "enum": ["price", "latency", "throughput"]},
            "max_price": _obj(
                {"prompt": _NUM, "completion": _NUM},
                description="RUB per 1K tokens; models above (or unpriced) are skipped.",
                additionalProperties=False,
            ),
            "require_parameters": {
                **_BOOL,
                "default": False,
                "description": "Only deployments that honour every parameter of the request.",
            },
        },
        description="OpenRouter's routing preferences. Unknown fields are a 400.",
        additionalProperties=False,
    ),
    "ChatMessage": _obj(
        {
            "role": {
                "type": "string",
                "enum": ["system", "developer", "user", "assistant", "tool"],
            },
            "content": {"oneOf": [_STR, {"type": "array", "items": _ANY_OBJ}], "nullable": True},
            "name": _STR,
            "tool_calls": {"type": "array", "items": _ANY_OBJ},
            "tool_call_id": _STR,
        },
        ("role",),
    ),
    "ChatCompletionRequest": _obj(
        {
            "model": _STR,
            "messages": {"type": "array", "items": _ref("ChatMessage"), "minItems": 1},
            "stream": _BOOL,
            "stream_options": _obj({"include_usage": _BOOL}),
            "temperature": {**_NUM, "minimum": 0, "maximum": 2},
            "top_p": {**_NUM, "minimum": 0, "maximum": 1},
            "max_tokens": {**_INT, "minimum": 1},
            "max_completion_tokens": {**_INT, "minimum": 1},
            "stop": {"oneOf": [_STR, _STRINGS]},
            "presence_penalty": _NUM,
            "frequency_penalty": _NUM,
            "seed": _INT,
            "n": {**_INT, "enum": [1]},
            "tools": {"type": "array", "items": _ANY_OBJ},
            "tool_choice": {"oneOf": [_STR, _ANY_OBJ]},
            "parallel_tool_calls": _BOOL,
            "response_format": _ANY_OBJ,
            "user": _STR,
            **_ROUTING,
        },
        ("model", "messages"),
        additionalProperties=True,
    ),
    "ChatCompletion": _obj(
        {
            "id": _STR,
            "object": {"type": "string", "enum": ["chat.completion"]},
            "created": _INT,
            "model": _STR,
            "choices": {"type": "array", "items": _ANY_OBJ},
            "usage": _ref("ChatUsage"),
        }
    ),
    "ChatUsage": _obj({"prompt_tokens": _INT, "completion_tokens": _INT, "total_tokens": _INT}),
    "CompletionRequest": _obj(
        {
            "model": _STR,
            "prompt": {"oneOf": [_STR, {**_STRINGS, "minItems": 1, "maxItems": 1}]},
            "max_tokens": {**_INT, "minimum": 1},
            "temperature": _NUM,
            "top_p": _NUM,
            "stop": {"oneOf": [_STR, _STRINGS]},
            "stream": _BOOL,
            "stream_options": _obj({"include_usage": _BOOL}),
            "seed": _INT,
            "user": _STR,
            **_ROUTING,
        },
        ("model", "prompt"),
        additionalProperties=True,
    ),
    "Completion": _obj(
        {
            "id": _STR,
            "object": {"type": "string", "enum": ["text_completion"]},
            "created": _INT,
            "model": _STR,
            "choices": {
                "type": "array",
                "items": _obj({"index": _INT, "text": _STR, "finish_reason": _STR}),
            },
            "usage": _ref("ChatUsage"),
        }
    ),
    "EmbeddingRequest": _obj(
        {
            "model": _STR,
            "input": {"oneOf": [_STR, _STRINGS]},
            "encoding_format": {"type": "string", "enum": ["float", "base64"]},
            "dimensions": {**_INT, "minimum": 1},
            "user": _STR,
        },
        ("model", "input"),
        additionalProperties=True,
    ),
    "EmbeddingList": _obj(
        {
            "object": {"type": "string", "enum": ["list"]},
            "data": {"type": "array", "items": _ANY_OBJ},
            "model": _STR,
            "usage": _obj({"prompt_tokens": _INT, "total_tokens": _INT}),
        }
    ),
    "V1Model": _obj(
        {
            "id": _STR,
            "object": {"type": "string", "enum": ["model"]},
            "created": _INT,
            "owned_by": _STR,
            "type": {"type": "string", "enum": ["chat", "embedding"]},
            "context_length": _INT,
            "pricing": _obj({"currency": _STR, "unit": _STR, "prompt": _STR, "completion": _STR}),
        }
    ),
    "V1ModelList": _obj(
        {
            "object": {"type": "string", "enum": ["list"]},
            "data": {"type": "array", "items": _ref("V1Model")},
        }
    ),
    "ResponseCreateRequest": _obj(
        {
            "model": _STR,
            "input": {
                "oneOf": [_STR, {"type": "array", "items": _ANY_OBJ}],
                "description": "Text, or items: messages, function_call, function_call_output.",
            },
            "instructions": _STR,
            "tools": {
                "type": "array",
                "items": _obj(
                    {
                        "type": {"type": "string", "enum": ["function"]},
                        "name": _STR,
                        "description": _STR,
                        "parameters": _ANY_OBJ,
                        "strict": _BOOL,
                    },
                    ("type", "name"),
                ),
            },
            "tool_choice": {"oneOf": [_STR, _ANY_OBJ]},
            "text": _obj({"format": _ANY_OBJ}),
            "reasoning": _obj(
                {
                    "effort": {
                        "type": "string",
                        "enum": ["none", "minimal", "low", "medium", "high", "xhigh"],
                    }
                }
            ),
            "max_output_tokens": {**_INT, "minimum": 1},
            "temperature": _NUM,
            "top_p": _NUM,
            "parallel_tool_calls": _BOOL,
            "stream": _BOOL,
            "store": {**_BOOL, "default": True},
            "previous_response_id": _STR,
            "metadata": {"type": "object", "additionalProperties": _STR},
            **_ROUTING,
        },
        ("model", "input"),
        additionalProperties=True,
    ),
    "Response": _obj(
        {
            "id": _STR,
            "object": {"type": "string", "enum": ["response"]},
            "created_at": _INT,
            "status": {
                "type": "string",
                "enum": ["completed", "incomplete", "failed", "in_progress"],
            },
            "model": _STR,
            "output": {"type": "array", "items": _ANY_OBJ},
            "previous_response_id": {"type": "string", "nullable": True},
            "store": _BOOL,
            "usage": _obj(
                {
                    "input_tokens": _INT,
                    "output_tokens": _INT,
                    "total_tokens": _INT,
                    "input_tokens_details": _obj({"cached_tokens": _INT}),
                    "output_tokens_details": _obj({"reasoning_tokens": _INT}),
                }
            ),
        }
    ),
    "ResponseDeleted": _obj(
        {"id": _STR, "object": {"type": "string", "enum": ["response"]}, "deleted": _BOOL}
    ),
    "MessagesRequest": _obj(
        {
            "model": _STR,
            "max_tokens": {**_INT, "minimum": 1},
            "system": {"oneOf": [_STR, {"type": "array", "items": _ANY_OBJ}]},
            "messages": {
                "type": "array",
                "minItems": 1,
                "items": _obj(
                    {
                        "role": {"type": "string", "enum": ["user", "assistant"]},
                        "content": {"oneOf": [_STR, {"type": "array", "items": _ANY_OBJ}]},
                    },
                    ("role", "content"),
                ),
            },
            "tools": {
                "type": "array",
                "items": _obj(
                    {"name": _STR, "description": _STR, "input_schema": _ANY_OBJ},
                    ("name", "input_schema"),
                ),
            },
            "tool_choice": _obj(
                {
                    "type": {"type": "string", "enum": ["auto", "any", "tool", "none"]},
                    "name": _STR,
                    "disable_parallel_tool_use": _BOOL,
                },
                ("type",),
            ),
            "stop_sequences": _STRINGS,
            "temperature": {**_NUM, "minimum": 0, "maximum": 1},
            "top_p": _NUM,
            "stream": _BOOL,
            "metadata": _obj({"user_id": _STR}),
            **_ROUTING,
        },
        ("model", "max_tokens", "messages"),
        additionalProperties=True,
    ),
    "Message": _obj(
        {
            "id": _STR,
            "type": {"type": "string", "enum": ["message"]},
            "role": {"type": "string", "enum": ["assistant"]},
            "model": _STR,
            "content": {"type": "array", "items": _ANY_OBJ},
            "stop_reason": {
                "type": "string",
                "enum": ["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal"],
            },
            "usage": _obj({"input_tokens": _INT, "output_tokens": _INT}),
        }
    ),
    "CountTokens": _obj({"input_tokens": _INT}, ("input_tokens",)),
    "KeyExchangeRequest": _obj(
        {
            "code": {**_STR, "description": "The code the callback URL received."},
            "code_verifier": {**_STR, "description": "The PKCE verifier of the challenge."},
            "code_challenge_method": {"type": "string", "enum": ["S256"], "default": "S256"},
        },
        ("code", "code_verifier"),
    ),
    "KeyExchangeResponse": _obj(
        {
            "key": {**_STR, "description": "A new standard API key, shown once."},
            "user_id": _STR,
        },
        ("key", "user_id"),
    ),
}

_OPENAI_ERRORS = {
    status: {"description": why, "content": {JSON: {"schema": _ref("OpenAIError")}}}
    for status, why in (
        ("400", "Malformed or invalid request (`param` names the field)."),
        ("401", "Missing or invalid key."),
        ("402", "A budget is spent."),
        ("403", "The key may not use this model."),
        ("404", "Unknown model or id."),
        ("429", "A rate limit (the gateway's or the provider's)."),
        ("502", "Upstream failed."),
        ("503", "Provider unavailable."),
    )
}
_ANTHROPIC_ERRORS = {
    status: {**body, "content": {JSON: {"schema": _ref("AnthropicError")}}}
    for status, body in _OPENAI_ERRORS.items()
}
_KEY: list[dict[str, list[str]]] = [{"xrouterKey": []}]


def _post(
    operation_id: str,
    summary: str,
    request: str,
    response: str,
    *,
    stream: bool = True,
    errors: dict[str, Any] = _OPENAI_ERRORS,
    security: list[dict[str, list[str]]] = _KEY,
) -> dict[str, Any]:
    content: dict[str, Any] = {JSON: {"schema": _ref(response)}}
    if stream:
        content[SSE] = {"schema": {"type": "string", "description": "With `stream: true`."}}
    return {
        "post": {
            "operationId": operation_id,
            "summary": summary,
            "tags": ["v1"],
            "security": security,
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref(request)}}},
            "responses": {"200": {"description": "Served.", "content": content}, **errors},
        }
    }


def _get(operation_id: str, summary: str, response: str, **extra: Any) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["v1"],
        "security": _KEY,
        "responses": {
            "200": {"description": "OK.", "content": {JSON: {"schema": _ref(response)}}},
            **{k: v for k, v in _OPENAI_ERRORS.items() if k in ("401", "404")},
        },
        **extra,
    }


_ID = {"name": "id", "in": "path", "required": True, "schema": _STR}
# The catalog's model id rule (routing.models._MODEL_ID); its "/" stays a
# path separator, the gateway reads everything after /v1/models/.
_MODEL_ID = {
    "name": "model_id",
    "in": "path",
    "required": True,
    "description": "A public model id: provider/model or provider/model:version.",
    "schema": {
        "type": "string",
        "maxLength": 200,
        "pattern": r"^[A-Za-z0-9][A-Za-z0-9._\-]*(/[A-Za-z0-9._\-]+)*(:[A-Za-z0-9._\-]+)?$",
        "example": "gigachat/gigachat-2",
    },
}
_ANTHROPIC_KEY: list[dict[str, list[str]]] = [{"anthropicKey": []}, {"xrouterKey": []}]

PATHS: dict[str, Any] = {
    "/v1/chat/completions": _post(
        "v1_chat_completions", "Chat completion (OpenAI)", "ChatCompletionRequest", "ChatCompletion"
    ),
    "/v1/completions": _post(
        "v1_completions", "Text completion (OpenAI, legacy)", "CompletionRequest", "Completion"
    ),
    "/v1/embeddings": _post(
        "v1_embeddings", "Embeddings (OpenAI)", "EmbeddingRequest", "EmbeddingList", stream=False
    ),
    "/v1/responses": _post(
        "v1_responses_create",
        "Create a response (OpenAI Responses)",
        "ResponseCreateRequest",
        "Response",
    ),
    "/v1/responses/{id}": {
        "get": _get(
            "v1_responses_retrieve", "A stored response of the team", "Response", parameters=[_ID]
        ),
        "delete": _get(
            "v1_responses_delete", "Delete a stored response", "ResponseDeleted", parameters=[_ID]
        ),
    },
    "/v1/messages": _post(
        "v1_messages",
        "Create a message (Anthropic Messages)",
        "MessagesRequest",
        "Message",
        errors=_ANTHROPIC_ERRORS,
        security=_ANTHROPIC_KEY,
    ),
    "/v1/messages/count_tokens": _post(
        "v1_messages_count_tokens",
        "Count a message's input tokens (Anthropic)",
        "MessagesRequest",
        "CountTokens",
        stream=False,
        errors=_ANTHROPIC_ERRORS,
        security=_ANTHROPIC_KEY,
    ),
    "/v1/models": {"get": _get("v1_models_list", "Models this key may use", "V1ModelList")},
    "/v1/models/{model_id}": {
        "get": _get("v1_models_retrieve", "One model", "V1Model", parameters=[_MODEL_ID])
    },
    "/api/v1/auth/keys": {
        "post": {
            "operationId": "auth_keys_exchange",
            "summary": "Trade a PKCE code for an API key (OpenRouter's key exchange)",
            "tags": ["auth"],
            "security": [],
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": _ref("KeyExchangeRequest")}},
            },
            "responses": {
                "200": {
                    "description": "The new key.",
                    "content": {JSON: {"schema": _ref("KeyExchangeResponse")}},
                },
                "400": _OPENAI_ERRORS["400"],
                "403": {**_OPENAI_ERRORS["403"], "description": "Invalid or expired code."},
                "429": _OPENAI_ERRORS["429"],
            },
        }
    },
}

SECURITY_SCHEMES = {
    "xrouterKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`xr_live_...`) or an OAuth access token with `chat`.",
    },
    "anthropicKey": {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": "The same API key, as Anthropic's SDKs send it.",
    },
}


def add_gateway_api(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular post-processing hook: add the ``/v1/`` API and key exchange."""
    result.setdefault("paths", {}).update(PATHS)
    components = result.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    clashes = sorted(set(SCHEMAS) & set(schemas))
    if clashes:  # never overwrite a management API component
        raise ValueError(f"OpenAPI component names used twice: {', '.join(clashes)}")
    schemas.update(SCHEMAS)
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    tags = result.setdefault("tags", [])
    tags += [
        {"name": "v1", "description": "The gateway: OpenAI, Anthropic and Responses surfaces."},
        {"name": "auth", "description": "OpenRouter-style key exchange (PKCE)."},
    ]
    return result
