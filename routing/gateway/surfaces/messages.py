"""``POST /v1/messages`` and ``/v1/messages/count_tokens``: Anthropic's Messages API.

Clients built for Claude (the ``anthropic`` SDKs, coding agents) reach the
catalog's models through the same hot path as chat. The body is translated
to the internal chat request:

* ``system`` (a string or text blocks) becomes a system message;
* user ``text`` / ``image`` blocks become content parts, ``tool_result``
  blocks tool messages (placed before the rest of that user turn);
* assistant ``text`` / ``tool_use`` blocks become the assistant's content and
  tool calls (``input`` serialised as the arguments string); ``thinking``
  blocks are dropped;
* ``tools`` (custom tools only), ``tool_choice`` (auto / any / tool / none,
  ``disable_parallel_tool_use``), ``max_tokens`` (required),
  ``stop_sequences``, ``temperature``, ``top_p``, ``metadata.user_id``, plus
  the gateway's ``models`` and ``provider`` extensions.

Replies come back as Anthropic ``message`` objects and, streamed, as its
event sequence (``message_start``, ``content_block_*``, ``message_delta``,
``message_stop``). Errors use Anthropic's ``{"type": "error", "error":
{...}}`` with the same statuses as chat, also for a stream cut after its
first byte (an ``error`` event). Keys are accepted in ``x-api-key`` as well
as ``Authorization: Bearer``; ``anthropic-version`` is accepted and ignored
(one wire version is served).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from providers.base import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    FinishReason,
    Message,
    Tool,
    ToolCall,
    Usage,
)
from providers.errors import ProviderError
from routing import preferences
from routing.gateway import pipeline, relay, validation
from routing.gateway.auth import authenticate
from routing.gateway.context import CallContext
from routing.gateway.validation import (
    _boolean,
    _integer,
    _missing,
    _number,
    _type_error,
    _value_error,
)
from xrouter_site.errors import ErrorCode, InvalidRequest, XRouterError, json_response

logger = logging.getLogger(__name__)

MAX_STOP_SEQUENCES = 4

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
}

_STOP_REASONS = {
    FinishReason.STOP: "end_turn",
    FinishReason.LENGTH: "max_tokens",
    FinishReason.TOOL_CALLS: "tool_use",
    FinishReason.CONTENT_FILTER: "refusal",
}


def _error_type(status: int) -> str:
    return _ERROR_TYPES.get(status, "api_error")


def error_body(status: int, message: str, request_id: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "error",
        "error": {"type": _error_type(status), "message": message},
    }
    if request_id:
        body["request_id"] = request_id
    return body


def error_response(error: XRouterError) -> HttpResponse:
    """Render ``error`` in Anthropic's dialect with the gateway's status."""
    return json_response(
        error_body(error.http_status, error.message),
        status=error.http_status,
        headers=error.headers,
    )


# --- request translation ------------------------------------------------------


def _text_of(raw: Any, param: str) -> str:
    """The text of a string or an array of text blocks."""
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, list):
        raise _type_error(param, "a string or an array of text blocks", raw)
    parts = []
    for i, block in enumerate(raw):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise _value_error(f"{param}[{i}]", "expected a text block.")
        text = block.get("text")
        if not isinstance(text, str):
            raise _type_error(f"{param}[{i}].text", "a string", text)
        parts.append(text)
    return "\n".join(parts)


def _image_part(block: dict[str, Any], param: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise _type_error(f"{param}.source", "an object", source)
    kind = source.get("type")
    if kind == "base64":
        media_type, data = source.get("media_type"), source.get("data")
        if not isinstance(media_type, str) or not isinstance(data, str):
            raise _missing(f"{param}.source.data")
        return {"type": "image_url", "image_url": {"url": f"data:{media_type};base64,{data}"}}
    if kind == "url" and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise _value_error(f"{param}.source.type", "must be 'base64' or 'url'.")


def _arguments(value: Any, param: str) -> str:
    if not isinstance(value, dict):
        raise _type_error(param, "an object", value)
    return orjson.dumps(value).decode()


def _turn(item: Any, param: str) -> list[Message]:
    if not isinstance(item, dict):
        raise _type_error(param, "an object", item)
    role = item.get("role")
    if role not in ("user", "assistant"):
        raise _value_error(f"{param}.role", f"must be 'user' or 'assistant'; got {role!r}.")
    content = item.get("content")
    if content is None:
        raise _missing(f"{param}.content")
    if isinstance(content, str):
        return [Message(role=role, content=content)]
    if not isinstance(content, list):
        raise _type_error(f"{param}.content", "a string or an array of content blocks", content)
    tool_results: list[Message] = []
    parts: list[dict[str, Any]] = []
    calls: list[ToolCall] = []
    for j, block in enumerate(content):
        where = f"{param}.content[{j}]"
        if not isinstance(block, dict):
            raise _type_error(where, "an object", block)
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            if not isinstance(text, str):
                raise _type_error(f"{where}.text", "a string", text)
            parts.append({"type": "text", "text": text})
        elif kind == "image" and role == "user":
            parts.append(_image_part(block, where))
        elif kind == "tool_use" and role == "assistant":
            call_id, name = block.get("id"), block.get("name")
            if not isinstance(call_id, str) or not call_id:
                raise _missing(f"{where}.id")
            if not isinstance(name, str) or not name:
                raise _missing(f"{where}.name")
            calls.append(
                ToolCall(id=call_id, name=name, arguments=_arguments(block.get("input"), where))
            )
        elif kind == "tool_result" and role == "user":
            call_id = block.get("tool_use_id")
            if not isinstance(call_id, str) or not call_id:
                raise _missing(f"{where}.tool_use_id")
            result = block.get("content", "")
            text = _text_of(result, f"{where}.content") if result else ""
            if block.get("is_error"):
                text = f"Error: {text}"
            tool_results.append(Message(role="tool", content=text, tool_call_id=call_id))
        elif kind in ("thinking", "redacted_thinking") and role == "assistant":
            continue  # the upstream's own reasoning is not sent back
        else:
            raise _value_error(
                f"{where}.type", f"unsupported content block {kind!r} in a {role} message."
            )
    messages = tool_results
    if role == "assistant":
        text = "".join(p["text"] for p in parts)
        if text or calls:
            messages.append(Message(role="assistant", content=text or None, tool_calls=calls))
    elif parts:
        only_text = all(p["type"] == "text" for p in parts)
        body: str | list[dict[str, Any]] = (
            "\n".join(p["text"] for p in parts) if only_text else parts
        )
        messages.append(Message(role="user", content=body))
    return messages


def _tools(body: dict[str, Any]) -> list[Tool]:
    raw = body.get("tools")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _type_error("tools", "an array", raw)
    if len(raw) > validation.MAX_TOOLS:
        raise _value_error("tools", f"at most {validation.MAX_TOOLS} tools are allowed.")
    tools = []
    for i, item in enumerate(raw):
        param = f"tools[{i}]"
        if not isinstance(item, dict):
            raise _type_error(param, "an object", item)
        if item.get("type", "custom") != "custom":
            raise _value_error(
                f"{param}.type", "only custom tools (name, input_schema) are supported."
            )
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise _missing(f"{param}.name")
        schema = item.get("input_schema")
        if not isinstance(schema, dict):
            raise _type_error(f"{param}.input_schema", "an object", schema)
        description = item.get("description")
        if description is not None and not isinstance(description, str):
            raise _type_error(f"{param}.description", "a string", description)
        tools.append(Tool(name=name, description=description, parameters=schema))
    return tools


def _tool_choice(body: dict[str, Any], tools: list[Tool]) -> tuple[Any, bool | None]:
    value = body.get("tool_choice")
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise _type_error("tool_choice", "an object", value)
    kind = value.get("type")
    parallel = value.get("disable_parallel_tool_use")
    if parallel is not None and not isinstance(parallel, bool):
        raise _type_error("tool_choice.disable_parallel_tool_use", "a boolean", parallel)
    allow_parallel = None if parallel is None else not parallel
    if kind == "auto":
        return "auto", allow_parallel
    if kind == "any":
        return "required", allow_parallel
    if kind == "none":
        return "none", None
    if kind == "tool":
        name = value.get("name")
        if not isinstance(name, str):
            raise _missing("tool_choice.name")
        if name not in {tool.name for tool in tools}:
            raise _value_error("tool_choice.name", f"no tool named {name!r} was given.")
        return {"type": "function", "function": {"name": name}}, allow_parallel
    raise _value_error("tool_choice.type", "must be 'auto', 'any', 'tool' or 'none'.")


def _stop(body: dict[str, Any]) -> list[str] | None:
    value = body.get("stop_sequences")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise _type_error("stop_sequences", "an array of strings", value)
    if len(value) > MAX_STOP_SEQUENCES:
        raise _value_error(
            "stop_sequences", f"at most {MAX_STOP_SEQUENCES} stop sequences are allowed."
        )
    return value or None


def messages_input(body: Any, *, counting: bool = False) -> validation.ChatInput:
    """Validate a Messages body (``counting``: a count_tokens body) into chat input."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code=ErrorCode.INVALID_JSON)
    model = validation.model_id(body)
    max_tokens = _integer(body, "max_tokens", 1, settings.XROUTER_MAX_TOKENS_CAP)
    if max_tokens is None and not counting:
        raise _missing("max_tokens")
    messages: list[Message] = []
    system = body.get("system")
    if system is not None:
        text = _text_of(system, "system")
        if text:
            messages.append(Message(role="system", content=text))
    raw = body.get("messages")
    if raw is None:
        raise _missing("messages")
    if not isinstance(raw, list):
        raise _type_error("messages", "an array", raw)
    if not raw:
        raise _value_error("messages", "must contain at least one message.")
    if len(raw) > validation.MAX_MESSAGES:
        raise _value_error("messages", f"at most {validation.MAX_MESSAGES} messages are allowed.")
    for i, item in enumerate(raw):
        messages.extend(_turn(item, f"messages[{i}]"))
    tools = _tools(body)
    tool_choice, parallel = _tool_choice(body, tools)
    metadata = body.get("metadata")
    user = None
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise _type_error("metadata", "an object", metadata)
        user = metadata.get("user_id")
        if user is not None and not isinstance(user, str):
            raise _type_error("metadata.user_id", "a string", user)
    request = ChatRequest(
        model=model,
        messages=messages,
        stream=bool(_boolean(body, "stream", False)) and not counting,
        temperature=_number(body, "temperature", 0, 1),
        top_p=_number(body, "top_p", 0, 1),
        max_tokens=max_tokens,
        stop=_stop(body),
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        user=user,
    )
    return validation.ChatInput(
        model=model,
        request=request,
        fallback_models=validation.fallback_models(body),
        preferences=preferences.parse(body.get("provider")),
    )


# --- reply translation ------------------------------------------------------------


def _usage(usage: Usage) -> dict[str, int]:
    return {
        "input_tokens": max(usage.prompt_tokens - usage.cached_tokens, 0),
        "output_tokens": usage.completion_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage.cached_tokens,
    }


def _input(arguments: str, ctx: CallContext) -> dict[str, Any]:
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        logger.warning("tool call arguments are not JSON", extra={"request_id": ctx.request_id})
        return {}
    return value if isinstance(value, dict) else {"value": value}


def _message_id(ctx: CallContext) -> str:
    return ctx.generation_id


def _message(result: ChatResponse, ctx: CallContext) -> dict[str, Any]:
    choice = result.choices[0]
    content: list[dict[str, Any]] = []
    text = choice.message.text()
    if text:
        content.append({"type": "text", "text": text})
    for call in choice.message.tool_calls:
        content.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.name,
                "input": _input(call.arguments, ctx),
            }
        )
    return {
        "id": _message_id(ctx),
        "type": "message",
        "role": "assistant",
        "model": ctx.model,
        "content": content,
        "stop_reason": _STOP_REASONS.get(choice.finish_reason or FinishReason.STOP, "end_turn"),
        "stop_sequence": None,
        "usage": _usage(result.usage),
    }


class MessagesEncoder:
    """Anthropic's stream: one content block per text run or tool call."""

    def __init__(self, ctx: CallContext) -> None:
        self.ctx = ctx
        self.index = -1  # index of the open block, -1 before the first
        self.open: str | None = None  # "text" | "tool_use" | None
        self.tool_blocks: dict[int, int] = {}  # upstream tool index -> block index
        self.stop_reason = "end_turn"

    def start(self) -> bytes:
        message: dict[str, Any] = {
            "id": _message_id(self.ctx),
            "type": "message",
            "role": "assistant",
            "model": self.ctx.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.ctx.prompt_estimate, "output_tokens": 0},
        }
        return relay.sse_event(
            "message_start", {"type": "message_start", "message": message}
        ) + relay.sse_event("ping", {"type": "ping"})

    def _close(self) -> bytes:
        if self.open is None:
            return b""
        self.open = None
        return relay.sse_event(
            "content_block_stop", {"type": "content_block_stop", "index": self.index}
        )

    def _begin(self, block: dict[str, Any]) -> bytes:
        out = self._close()
        self.index += 1
        self.open = block["type"]
        return out + relay.sse_event(
            "content_block_start",
            {"type": "content_block_start", "index": self.index, "content_block": block},
        )

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return relay.sse_event(
            "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        )

    def chunk(self, chunk: ChatChunk) -> bytes:
        out = b""
        # A refusal that replaced an answer already started goes on as text.
        text = (chunk.content or "") + (chunk.refusal or "")
        if text:
            if self.open != "text":
                out += self._begin({"type": "text", "text": ""})
            out += self._delta(self.index, {"type": "text_delta", "text": text})
        for call in chunk.tool_calls:
            if call.index not in self.tool_blocks:
                out += self._begin(
                    {
                        "type": "tool_use",
                        "id": call.id or f"toolu_{self.ctx.generation_id}_{call.index}",
                        "name": call.name or "",
                        "input": {},
                    }
                )
                self.tool_blocks[call.index] = self.index
            if call.arguments:
                out += self._delta(
                    self.tool_blocks[call.index],
                    {"type": "input_json_delta", "partial_json": call.arguments},
                )
        if chunk.finish_reason is not None:
            self.stop_reason = _STOP_REASONS.get(chunk.finish_reason, "end_turn")
        return out

    def end(self, usage: Usage) -> bytes:
        return (
            self._close()
            + relay.sse_event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
                    "usage": _usage(usage),
                },
            )
            + relay.sse_event("message_stop", {"type": "message_stop"})
        )

    def error(self, exc: ProviderError) -> bytes:
        return relay.sse_event("error", error_body(exc.status, exc.message, self.ctx.request_id))


# --- views --------------------------------------------------------------------------


def _principal(request: HttpRequest, ctx: CallContext) -> Any:
    header = request.META.get("HTTP_AUTHORIZATION")
    if not header:
        api_key = request.META.get("HTTP_X_API_KEY", "").strip()
        header = f"Bearer {api_key}" if api_key else ""
    return authenticate(request, ctx, header)


def messages(request: HttpRequest, ctx: CallContext) -> HttpResponseBase:
    ctx.endpoint = "messages"
    ctx.render_error = error_response
    principal = _principal(request, ctx)
    data = messages_input(pipeline.read_json(request, ctx))
    pipeline.note_session(request, data)
    if data.request.stream:
        stream, first = pipeline.start_stream(request, ctx, principal, data)
        return pipeline.stream_response(ctx, stream, first, MessagesEncoder(ctx))
    result = pipeline.complete_chat(request, ctx, principal, data)
    return pipeline.served_json(ctx, _message(result, ctx))


def count_tokens(request: HttpRequest, ctx: CallContext) -> HttpResponseBase:
    ctx.endpoint = "count_tokens"
    ctx.render_error = error_response
    principal = _principal(request, ctx)
    data = messages_input(pipeline.read_json(request, ctx), counting=True)
    tokens = pipeline.count_tokens(request, ctx, principal, data)
    return pipeline.served_json(ctx, {"input_tokens": tokens})
