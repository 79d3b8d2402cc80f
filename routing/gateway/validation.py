"""Validate OpenAI-style request bodies at the edge.

Hand-written rather than a schema library: it runs on every request, and
each failure names the exact ``param`` (``messages[2].role``) the way
OpenAI's own errors do. Unknown top-level fields are ignored, as OpenAI
clients send fields (``store``, ``metadata``, ``logprobs``...) a gateway
need not understand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from providers.base import ChatRequest, EmbeddingRequest, Message, Tool, ToolCall
from routing import preferences
from xrouter_site.errors import ErrorCode, InvalidRequest

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
MAX_MESSAGES = 2048
MAX_TOOLS = 128
MAX_STOP = 4
MAX_EMBEDDING_INPUTS = 2048
MAX_MODEL_ID = 200

_TYPE_NAMES = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


def _got(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _type_error(param: str, expected: str, value: Any) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {_got(value)} instead.",
        param=param,
        code=ErrorCode.INVALID_TYPE,
    )


def _value_error(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid value for '{param}': {message}", param=param, code=ErrorCode.INVALID_VALUE
    )


def _missing(param: str) -> InvalidRequest:
    return InvalidRequest(
        f"Missing required parameter: '{param}'.", param=param, code=ErrorCode.MISSING_PARAMETER
    )


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _type_error(name, "a number", value)
    if not low <= value <= high:
        raise _value_error(name, f"must be between {low:g} and {high:g}, got {value:g}.")
    return float(value)


def _integer(body: dict[str, Any], name: str, low: int, high: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error(name, "an integer", value)
    if value < low or (high is not None and value > high):
        if high is None:
            bound = f"at least {low}"
        elif low == high:
            bound = f"exactly {low}"
        else:
            bound = f"between {low} and {high}"
        raise _value_error(name, f"must be {bound}, got {value}.")
    return value


def _boolean(body: dict[str, Any], name: str, default: bool | None = None) -> bool | None:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _type_error(name, "a boolean", value)
    return value


def _string(body: dict[str, Any], name: str, *, param: str | None = None) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _type_error(param or name, "a string", value)
    return value


def model_id(body: dict[str, Any]) -> str:
    value = body.get("model")
    if value is None:
        raise _missing("model")
    if not isinstance(value, str):
        raise _type_error("model", "a string", value)
    value = value.strip()
    if not value or len(value) > MAX_MODEL_ID:
        raise _value_error("model", f"must be a model id of 1 to {MAX_MODEL_ID} characters.")
    return value


def _content(raw: Any, param: str) -> str | list[dict[str, Any]] | None:
    if raw is None or isinstance(raw, str):
        return raw
    if not isinstance(raw, list):
        raise _type_error(param, "a string or an array of content parts", raw)
    for j, part in enumerate(raw):
        part_param = f"{param}[{j}]"
        if not isinstance(part, dict):
            raise _type_error(part_param, "an object", part)
        kind = part.get("type")
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise _type_error(f"{part_param}.text", "a string", part.get("text"))
        elif kind not in ("image_url", "input_audio", "file"):
            raise _value_error(f"{part_param}.type", f"unsupported content part type {kind!r}.")
    return raw


def _tool_calls(raw: Any, param: str) -> list[ToolCall]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _type_error(param, "an array", raw)
    calls = []
    for j, call in enumerate(raw):
        call_param = f"{param}[{j}]"
        if not isinstance(call, dict):
            raise _type_error(call_param, "an object", call)
        function = call.get("function")
        if not isinstance(function, dict):
            raise _type_error(f"{call_param}.function", "an object", function)
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise _type_error(f"{call_param}.function.name", "a string", name)
        arguments = function.get("arguments", "{}")
        if not isinstance(arguments, str):
            raise _type_error(f"{call_param}.function.arguments", "a string", arguments)
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            raise _type_error(f"{call_param}.id", "a string", call_id)
        calls.append(ToolCall(id=call_id, name=name, arguments=arguments))
    return calls


def _messages(body: dict[str, Any]) -> list[Message]:
    raw = body.get("messages")
    if raw is None:
        raise _missing("messages")
    if not isinstance(raw, list):
        raise _type_error("messages", "an array", raw)
    if not raw:
        raise _value_error("messages", "must contain at least one message.")
    if len(raw) > MAX_MESSAGES:
        raise _value_error("messages", f"at most {MAX_MESSAGES} messages are allowed.")
    messages = []
    for i, item in enumerate(raw):
        param = f"messages[{i}]"
        if not isinstance(item, dict):
            raise _type_error(param, "an object", item)
        role = item.get("role")
        if role is None:
            raise _missing(f"{param}.role")
        if not isinstance(role, str):
            raise _type_error(f"{param}.role", "a string", role)
        if role not in ROLES:
            raise _value_error(
                f"{param}.role", f"must be one of {', '.join(sorted(ROLES))}; got {role!r}."
            )
        content = _content(item.get("content"), f"{param}.content")
        tool_calls = _tool_calls(item.get("tool_calls"), f"{param}.tool_calls")
        if tool_calls and role != "assistant":
            raise _value_error(f"{param}.tool_calls", "only assistant messages carry tool calls.")
        if content is None and not (role == "assistant" and tool_calls):
            raise _missing(f"{param}.content")
        tool_call_id = _string(item, "tool_call_id", param=f"{param}.tool_call_id")
        if role == "tool" and not tool_call_id:
            raise _missing(f"{param}.tool_call_id")
        name = _string(item, "name", param=f"{param}.name")
        messages.append(
            Message(
                role=role,
                content=content,
                name=name,
                tool_calls=tool_calls,
                tool_call_id=tool_call_id,
            )
        )
    return messages


def _tools(body: dict[str, Any]) -> list[Tool]:
    raw = body.get("tools")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _type_error("tools", "an array", raw)
    if len(raw) > MAX_TOOLS:
        raise _value_error("tools", f"at most {MAX_TOOLS} tools are allowed.")
    tools = []
    for i, item in enumerate(raw):
        param = f"tools[{i}]"
        if not isinstance(item, dict):
            raise _type_error(param, "an object", item)
        if item.get("type", "function") != "function":
            raise _value_error(f"{param}.type", "only 'function' tools are supported.")
        function = item.get("function")
        if not isinstance(function, dict):
            raise _type_error(f"{param}.function", "an object", function)
        tools.append(function_tool(function, f"{param}.function"))
    return tools


def function_tool(spec: dict[str, Any], param: str) -> Tool:
    """Return the tool a function declaration describes; ``param`` names it in errors.

    Chat nests the declaration under ``function``, the Responses API does
    not; the fields and their checks are the same.
    """
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise _missing(f"{param}.name")
    parameters = spec.get("parameters", {})
    if not isinstance(parameters, dict):
        raise _type_error(f"{param}.parameters", "an object", parameters)
    description = spec.get("description")
    if description is not None and not isinstance(description, str):
        raise _type_error(f"{param}.description", "a string", description)
    strict = spec.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise _type_error(f"{param}.strict", "a boolean", strict)
    return Tool(name=name, description=description, parameters=parameters, strict=strict)


def _tool_choice(body: dict[str, Any], tools: list[Tool]) -> str | dict[str, Any] | None:
    value = body.get("tool_choice")
    if value is None:
        return None
    if isinstance(value, str):
        if value not in ("auto", "none", "required"):
            raise _value_error("tool_choice", "must be 'auto', 'none', 'required' or an object.")
        return value
    if not isinstance(value, dict):
        raise _type_error("tool_choice", "a string or an object", value)
    function = value.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str):
        raise _missing("tool_choice.function.name")
    if name not in {tool.name for tool in tools}:
        raise _value_error("tool_choice.function.name", f"no tool named {name!r} was given.")
    return {"type": "function", "function": {"name": name}}


def _stop(body: dict[str, Any]) -> list[str] | None:
    value = body.get("stop")
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise _type_error("stop", "a string or an array of strings", value)
    if len(value) > MAX_STOP:
        raise _value_error("stop", f"at most {MAX_STOP} stop sequences are allowed.")
    return value or None


def _response_format(body: dict[str, Any]) -> dict[str, Any] | None:
    value = body.get("response_format")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _type_error("response_format", "an object", value)
    kind = value.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = value.get("json_schema")
        if not isinstance(schema, dict) or not isinstance(schema.get("name"), str):
            raise _missing("response_format.json_schema.name")
        if not isinstance(schema.get("schema", {}), dict):
            raise _type_error("response_format.json_schema.schema", "an object", schema["schema"])
        return {"type": "json_schema", "json_schema": schema}
    raise _value_error("response_format.type", "must be 'text', 'json_object' or 'json_schema'.")


@dataclass(slots=True)
class ChatInput:
    """A validated chat request: the public model id plus the adapter request."""

    model: str
    request: ChatRequest
    include_usage: bool = False
    fallback_models: list[str] = field(default_factory=list)
    # Which parameter carried max_tokens (errors name what the client sent).
    max_tokens_param: str = "max_tokens"
    preferences: preferences.Preferences = preferences.DEFAULT


#: OpenAI's reasoning_effort values; GigaChat takes the same word (v1 field,
#: v2 ``model_options.reasoning.effort``).
REASONING_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high"})
#: Yandex's native ``completionOptions.reasoningOptions.mode`` values.
YANDEX_REASONING_MODES = frozenset({"DISABLED", "ENABLED_HIDDEN"})
MAX_FLAGS = 16


def provider_extra(body: dict[str, Any]) -> dict[str, Any]:
    """Validate the provider-specific chat fields, under their documented names.

    GigaChat: ``repetition_penalty``, ``update_interval``, ``profanity_check``,
    ``flags``, ``reasoning_effort``; Yandex: ``reasoningOptions``. They go to
    ``ChatRequest.extra``; adapters of other providers ignore them (the
    response names them in ``x-xrouter-ignored-params``).
    """
    extra: dict[str, Any] = {}
    penalty = _number(body, "repetition_penalty", 0, 10)
    if penalty is not None:
        if penalty <= 0:
            raise _value_error("repetition_penalty", f"must be above 0, got {penalty:g}.")
        extra["repetition_penalty"] = penalty
    interval = _number(body, "update_interval", 0, 60)
    if interval is not None:
        extra["update_interval"] = interval
    profanity = _boolean(body, "profanity_check")
    if profanity is not None:
        extra["profanity_check"] = profanity
    flags = body.get("flags")
    if flags is not None:
        if not isinstance(flags, list) or not all(isinstance(f, str) and f for f in flags):
            raise _type_error("flags", "an array of strings", flags)
        if len(flags) > MAX_FLAGS or any(len(f) > 64 for f in flags):
            raise _value_error("flags", f"at most {MAX_FLAGS} flags of up to 64 characters.")
        extra["flags"] = list(flags)
    effort = _string(body, "reasoning_effort")
    if effort is not None:
        if effort not in REASONING_EFFORTS:
            raise _value_error(
                "reasoning_effort", f"must be one of {', '.join(sorted(REASONING_EFFORTS))}."
            )
        extra["reasoning_effort"] = effort
    options = body.get("reasoningOptions")
    if options is not None:
        if not isinstance(options, dict):
            raise _type_error("reasoningOptions", "an object", options)
        mode = options.get("mode")
        if mode not in YANDEX_REASONING_MODES:
            raise _value_error(
                "reasoningOptions.mode",
                f"must be one of {', '.join(sorted(YANDEX_REASONING_MODES))}.",
            )
        extra["reasoning_mode"] = mode
    return extra


def chat_input(body: Any) -> ChatInput:
    """Validate a ``/v1/chat/completions`` body; raise ``InvalidRequest``."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code=ErrorCode.INVALID_JSON)
    model = model_id(body)
    messages = _messages(body)
    stream = bool(_boolean(body, "stream", False))
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise _type_error("stream_options", "an object", options)
        if not stream:
            raise _value_error("stream_options", "is only allowed when 'stream' is true.")
        include_usage = bool(_boolean(options, "include_usage", False))
    # Bounded: an absurd value (2^64-1) is refused here instead of being
    # forwarded upstream or reserved against limits and budgets.
    cap = settings.XROUTER_MAX_TOKENS_CAP
    max_tokens_param = "max_completion_tokens"
    max_tokens = _integer(body, max_tokens_param, 1, cap)
    if max_tokens is None:
        max_tokens_param = "max_tokens"
        max_tokens = _integer(body, max_tokens_param, 1, cap)
    tools = _tools(body)
    request = ChatRequest(
        model=model,
        messages=messages,
        stream=stream,
        temperature=_number(body, "temperature", 0, 2),
        top_p=_number(body, "top_p", 0, 1),
        max_tokens=max_tokens,
        stop=_stop(body),
        presence_penalty=_number(body, "presence_penalty", -2, 2),
        frequency_penalty=_number(body, "frequency_penalty", -2, 2),
        seed=_integer(body, "seed", -(2**63)),
        n=_integer(body, "n", 1, 1) or 1,
        tools=tools,
        tool_choice=_tool_choice(body, tools),
        parallel_tool_calls=_boolean(body, "parallel_tool_calls"),
        response_format=_response_format(body),
        user=_string(body, "user"),
        extra=provider_extra(body),
    )
    return ChatInput(
        model=model,
        request=request,
        include_usage=include_usage,
        fallback_models=fallback_models(body),
        max_tokens_param=max_tokens_param,
        preferences=preferences.parse(body.get("provider")),
    )


def fallback_models(body: dict[str, Any]) -> list[str]:
    """Return the request's ``models`` list (OpenRouter-style fallbacks)."""
    models = body.get("models")
    if models is None:
        return []
    if not isinstance(models, list) or not all(isinstance(m, str) and m.strip() for m in models):
        raise _type_error("models", "an array of model ids", models)
    return [m.strip() for m in models]


@dataclass(slots=True)
class EmbeddingInput:
    model: str
    request: EmbeddingRequest
    encoding_format: str = "float"
    preferences: preferences.Preferences = preferences.DEFAULT


def embedding_input(body: Any) -> EmbeddingInput:
    """Validate a ``/v1/embeddings`` body; raise ``InvalidRequest``."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code=ErrorCode.INVALID_JSON)
    model = model_id(body)
    raw = body.get("input")
    if raw is None:
        raise _missing("input")
    if isinstance(raw, str):
        inputs = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(item, str) for item in raw):
        inputs = raw
    elif (
        isinstance(raw, list)
        and raw
        and all(isinstance(item, int | list) and not isinstance(item, bool) for item in raw)
    ):
        raise _value_error("input", "token arrays are not supported by these providers; send text.")
    else:
        raise _type_error("input", "a string or a non-empty array of strings", raw)
    if len(inputs) > MAX_EMBEDDING_INPUTS:
        raise _value_error("input", f"at most {MAX_EMBEDDING_INPUTS} inputs are allowed.")
    if any(not text for text in inputs):
        raise _value_error("input", "inputs must not be empty strings.")
    encoding_format = _string(body, "encoding_format") or "float"
    if encoding_format not in ("float", "base64"):
        raise _value_error("encoding_format", "must be 'float' or 'base64'.")
    request = EmbeddingRequest(
        model=model,
        inputs=inputs,
        dimensions=_integer(body, "dimensions", 1),
        user=_string(body, "user"),
    )
    return EmbeddingInput(
        model=model,
        request=request,
        encoding_format=encoding_format,
        preferences=preferences.parse(body.get("provider")),
    )
