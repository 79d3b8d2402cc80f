"""``/v1/responses``: OpenAI's Responses API on the chat hot path.

``POST /v1/responses`` takes ``input`` (a string or items: messages,
``function_call`` and ``function_call_output``; ``reasoning`` items are
dropped), ``instructions``, function ``tools``, ``tool_choice``,
``text.format`` (text / json_object / json_schema), ``reasoning.effort``,
``max_output_tokens``, ``temperature``, ``top_p``, ``parallel_tool_calls``,
``metadata``, ``store`` and ``previous_response_id``, plus the gateway's
``models`` and ``provider`` extensions. It is translated to the internal chat
request, served like chat (auth, limits, routing, fallback, usage, metrics,
logs) and answered as a ``response`` object or, streamed, as the typed event
sequence (``response.created`` ... ``response.completed``; a stream cut
after its first byte ends with ``error`` and ``response.failed``).

``store`` (default true, as OpenAI's) keeps the result for the team
(:mod:`routing.gateway.surfaces.store`): ``previous_response_id`` continues from it,
``GET`` / ``DELETE /v1/responses/{id}`` read and remove it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
from routing.gateway.surfaces import store
from routing.gateway.validation import (
    _boolean,
    _integer,
    _missing,
    _number,
    _string,
    _type_error,
    _value_error,
)
from xrouter_site.errors import (
    ErrorCode,
    InvalidRequest,
    NotFound,
    json_response,
)

EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
MAX_METADATA = 16
MAX_ID = 80
ROLES = ("user", "assistant", "system", "developer")
# Fields of OpenAI's API the chat providers cannot honour: refused, not ignored.
UNSUPPORTED = {
    "background": "background responses are not supported.",
    "conversation": "conversations are not supported; use previous_response_id.",
    "prompt": "prompt templates are not supported.",
}


class ResponseNotFound(NotFound):
    code = ErrorCode.NOT_FOUND


@dataclass(slots=True)
class ResponseInput:
    """A validated Responses body: the chat input and what the reply echoes."""

    chat: validation.ChatInput
    new_messages: list[Message]
    history: list[Message]
    echo: dict[str, Any]
    store: bool
    previous_response_id: str
    metadata: dict[str, str] = field(default_factory=dict)


# --- request translation ------------------------------------------------------


def _content_text(raw: Any, param: str) -> str:
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, list):
        raise _type_error(param, "a string or an array of content parts", raw)
    texts = []
    for j, part in enumerate(raw):
        if not isinstance(part, dict) or not isinstance(part.get("text"), str):
            raise _value_error(f"{param}[{j}]", "expected a text part.")
        texts.append(part["text"])
    return "".join(texts)


def _message_content(raw: Any, param: str) -> str | list[dict[str, Any]]:
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, list):
        raise _type_error(param, "a string or an array of content parts", raw)
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(raw):
        where = f"{param}[{j}]"
        if not isinstance(part, dict):
            raise _type_error(where, "an object", part)
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            if not isinstance(part.get("text"), str):
                raise _type_error(f"{where}.text", "a string", part.get("text"))
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "refusal":
            parts.append({"type": "text", "text": str(part.get("refusal") or "")})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str) or not url:
                raise _value_error(f"{where}.image_url", "send the image as a URL or data URL.")
            image: dict[str, Any] = {"url": url}
            if isinstance(part.get("detail"), str):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise _value_error(f"{where}.type", f"unsupported content part type {kind!r}.")
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _items(raw: Any) -> list[Message]:
    if isinstance(raw, str):
        return [Message(role="user", content=raw)]
    if not isinstance(raw, list):
        raise _type_error("input", "a string or an array of input items", raw)
    if len(raw) > validation.MAX_MESSAGES:
        raise _value_error("input", f"at most {validation.MAX_MESSAGES} items are allowed.")
    messages: list[Message] = []
    for i, item in enumerate(raw):
        param = f"input[{i}]"
        if not isinstance(item, dict):
            raise _type_error(param, "an object", item)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ROLES:
                raise _value_error(f"{param}.role", f"must be one of {', '.join(ROLES)}.")
            if "content" not in item:
                raise _missing(f"{param}.content")
            content = _message_content(item["content"], f"{param}.content")
            messages.append(Message(role=role, content=content))
        elif kind == "function_call":
            call_id, name = item.get("call_id"), item.get("name")
            arguments = item.get("arguments", "{}")
            if not isinstance(call_id, str) or not call_id:
                raise _missing(f"{param}.call_id")
            if not isinstance(name, str) or not name:
                raise _missing(f"{param}.name")
            if not isinstance(arguments, str):
                raise _type_error(f"{param}.arguments", "a string", arguments)
            call = ToolCall(id=call_id, name=name, arguments=arguments)
            last = messages[-1] if messages else None
            if last is not None and last.role == "assistant":
                # Parallel calls (and the text before them) are one turn.
                last.tool_calls.append(call)
            else:
                messages.append(Message(role="assistant", content=None, tool_calls=[call]))
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise _missing(f"{param}.call_id")
            if "output" not in item:
                raise _missing(f"{param}.output")
            output = _content_text(item["output"], f"{param}.output")
            messages.append(Message(role="tool", content=output, tool_call_id=call_id))
        elif kind == "reasoning":
            continue  # the upstream's reasoning is not sent back
        else:
            raise _value_error(f"{param}.type", f"unsupported input item type {kind!r}.")
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
        if item.get("type") != "function":
            raise _value_error(f"{param}.type", "only 'function' tools are supported.")
        # Here a null (or empty) "parameters" means a tool without arguments.
        spec = {**item, "parameters": item.get("parameters") or {}}
        tools.append(validation.function_tool(spec, param))
    return tools


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
    if value.get("type") != "function":
        raise _value_error("tool_choice.type", "only 'function' tool choices are supported.")
    name = value.get("name")
    if not isinstance(name, str):
        raise _missing("tool_choice.name")
    if name not in {tool.name for tool in tools}:
        raise _value_error("tool_choice.name", f"no tool named {name!r} was given.")
    return {"type": "function", "function": {"name": name}}


def _text_format(body: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Return (chat response_format, the ``text`` object to echo)."""
    text = body.get("text")
    if text is None:
        return None, {"format": {"type": "text"}}
    if not isinstance(text, dict):
        raise _type_error("text", "an object", text)
    fmt = text.get("format")
    if fmt is None:
        return None, {"format": {"type": "text"}}
    if not isinstance(fmt, dict):
        raise _type_error("text.format", "an object", fmt)
    kind = fmt.get("type")
    if kind == "text":
        return None, {"format": {"type": "text"}}
    if kind == "json_object":
        return {"type": "json_object"}, {"format": {"type": "json_object"}}
    if kind == "json_schema":
        name = fmt.get("name")
        if not isinstance(name, str) or not name:
            raise _missing("text.format.name")
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            raise _type_error("text.format.schema", "an object", schema)
        spec: dict[str, Any] = {"name": name, "schema": schema}
        if isinstance(fmt.get("strict"), bool):
            spec["strict"] = fmt["strict"]
        if isinstance(fmt.get("description"), str):
            spec["description"] = fmt["description"]
        return {"type": "json_schema", "json_schema": spec}, {
            "format": {"type": "json_schema", **spec}
        }
    raise _value_error("text.format.type", "must be 'text', 'json_object' or 'json_schema'.")


def _reasoning(body: dict[str, Any]) -> str | None:
    value = body.get("reasoning")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _type_error("reasoning", "an object", value)
    effort = value.get("effort")
    if effort is None:
        return None
    if effort not in EFFORTS:
        raise _value_error("reasoning.effort", f"must be one of {', '.join(EFFORTS)}.")
    return str(effort)


def _metadata(body: dict[str, Any]) -> dict[str, str]:
    value = body.get("metadata")
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _type_error("metadata", "an object of strings", value)
    if len(value) > MAX_METADATA:
        raise _value_error("metadata", f"at most {MAX_METADATA} keys are allowed.")
    return dict(value)


def responses_input(body: Any, history: Callable[[str], list[Message] | None]) -> ResponseInput:
    """Validate a Responses body; ``history(id)`` loads a stored conversation."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code=ErrorCode.INVALID_JSON)
    for name, why in UNSUPPORTED.items():
        if body.get(name) not in (None, False):
            raise _value_error(name, why)
    model = validation.model_id(body)
    if "input" not in body:
        raise _missing("input")
    new_messages = _items(body["input"])
    if not new_messages:
        raise _value_error("input", "must contain at least one message.")
    instructions = _string(body, "instructions")
    previous_id = _string(body, "previous_response_id") or ""
    previous: list[Message] = []
    if previous_id:
        loaded = history(previous_id) if len(previous_id) <= MAX_ID else None
        if loaded is None:
            raise ResponseNotFound(
                f"Previous response with id '{previous_id}' not found.",
                param="previous_response_id",
            )
        previous = loaded
    tools = _tools(body)
    response_format, text = _text_format(body)
    effort = _reasoning(body)
    stream = bool(_boolean(body, "stream", False))
    messages = ([Message(role="system", content=instructions)] if instructions else []) + [
        *previous,
        *new_messages,
    ]
    request = ChatRequest(
        model=model,
        messages=messages,
        stream=stream,
        temperature=_number(body, "temperature", 0, 2),
        top_p=_number(body, "top_p", 0, 1),
        max_tokens=_integer(body, "max_output_tokens", 1, settings.XROUTER_MAX_TOKENS_CAP),
        tools=tools,
        tool_choice=_tool_choice(body, tools),
        parallel_tool_calls=_boolean(body, "parallel_tool_calls"),
        response_format=response_format,
        user=_string(body, "safety_identifier") or _string(body, "user"),
        extra={"reasoning_effort": effort} if effort and effort != "none" else {},
    )
    echo = {
        "instructions": instructions,
        "max_output_tokens": request.max_tokens,
        "parallel_tool_calls": request.parallel_tool_calls
        if request.parallel_tool_calls is not None
        else True,
        "reasoning": {"effort": effort, "summary": None},
        "temperature": request.temperature,
        "text": text,
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": body.get("tools") or [],
        "top_p": request.top_p,
        "truncation": "disabled",
        "user": request.user,
    }
    return ResponseInput(
        chat=validation.ChatInput(
            model=model,
            request=request,
            fallback_models=validation.fallback_models(body),
            max_tokens_param="max_output_tokens",
            preferences=preferences.parse(body.get("provider")),
        ),
        new_messages=new_messages,
        history=previous,
        echo=echo,
        store=bool(_boolean(body, "store", True)),
        previous_response_id=previous_id,
        metadata=_metadata(body),
    )


# --- reply translation ------------------------------------------------------------


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


def _text_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def _call_item(item_id: str, call: ToolCall, status: str = "completed") -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments,
        "status": status,
    }


def _status(finish: FinishReason | None) -> tuple[str, dict[str, str] | None]:
    if finish == FinishReason.LENGTH:
        return "incomplete", {"reason": "max_output_tokens"}
    if finish == FinishReason.CONTENT_FILTER:
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


class Reply:
    """One response being built: its id, echo fields and output items."""

    def __init__(self, ctx: CallContext, data: ResponseInput) -> None:
        self.ctx = ctx
        self.data = data
        self.id = f"resp_{uuid.uuid4().hex}"
        self.created_at = int(time.time())
        self.output: list[dict[str, Any]] = []

    def item_id(self, kind: str) -> str:
        return f"{kind}_{self.id[5:]}{len(self.output)}"

    def body(
        self,
        status: str,
        usage: Usage | None = None,
        *,
        incomplete: dict[str, str] | None = None,
        error: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "error": error,
            "incomplete_details": incomplete,
            "model": self.ctx.model,
            "output": list(self.output),
            "previous_response_id": self.data.previous_response_id or None,
            "store": self.data.store,
            "metadata": self.data.metadata,
            "usage": _usage(usage) if usage is not None else None,
            **self.data.echo,
        }

    def assistant(self) -> Message:
        """The reply as the conversation's next assistant message(s)."""
        text = "".join(
            part["text"]
            for item in self.output
            if item["type"] == "message"
            for part in item["content"]
        )
        calls = [
            ToolCall(id=item["call_id"], name=item["name"], arguments=item["arguments"])
            for item in self.output
            if item["type"] == "function_call"
        ]
        return Message(role="assistant", content=text or None, tool_calls=calls)

    def keep(self, body: dict[str, Any]) -> None:
        """Store the finished response for the team when asked to."""
        principal = self.ctx.principal
        if not self.data.store or principal is None:
            return
        store.response_save(
            response_id=self.id,
            team_id=principal.team_id,
            key_id=principal.key_id,
            model=self.ctx.model or "",
            previous_response_id=self.data.previous_response_id,
            conversation=[*self.data.history, *self.data.new_messages, self.assistant()],
            body=body,
        )


def _complete(result: ChatResponse, reply: Reply) -> dict[str, Any]:
    choice = result.choices[0]
    text = choice.message.text()
    if text or not choice.message.tool_calls:
        reply.output.append(_text_item(reply.item_id("msg"), text))
    for call in choice.message.tool_calls:
        reply.output.append(_call_item(reply.item_id("fc"), call))
    status, incomplete = _status(choice.finish_reason)
    body = reply.body(status, result.usage, incomplete=incomplete)
    reply.keep(body)
    return body


def _event(payload: dict[str, Any]) -> bytes:
    return relay.sse_event(str(payload["type"]), payload)


class ResponsesEncoder:
    """The typed Responses event stream, one output item per text run or call."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.sequence = 0
        self.open: dict[str, Any] | None = None  # the item being streamed
        self.calls: dict[int, dict[str, Any]] = {}  # upstream tool index -> item
        self.finish: FinishReason | None = None

    def _emit(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return _event(payload)

    def start(self) -> bytes:
        body = self.reply.body("in_progress")
        return self._emit("response.created", response=body) + self._emit(
            "response.in_progress", response=body
        )

    def _close(self) -> bytes:
        item = self.open
        if item is None:
            return b""
        self.open = None
        index = self.reply.output.index(item)
        item["status"] = "completed"
        if item["type"] == "message":
            part = item["content"][0]
            return (
                self._emit(
                    "response.output_text.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    text=part["text"],
                    logprobs=[],
                )
                + self._emit(
                    "response.content_part.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    part=part,
                )
                + self._emit("response.output_item.done", output_index=index, item=item)
            )
        return self._emit(
            "response.function_call_arguments.done",
            item_id=item["id"],
            output_index=index,
            name=item["name"],
            arguments=item["arguments"],
        ) + self._emit("response.output_item.done", output_index=index, item=item)

    def _begin(self, item: dict[str, Any]) -> bytes:
        out = self._close()
        self.reply.output.append(item)
        self.open = item
        index = len(self.reply.output) - 1
        out += self._emit("response.output_item.added", output_index=index, item=_copy(item))
        if item["type"] == "message":
            out += self._emit(
                "response.content_part.added",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                part={"type": "output_text", "text": "", "annotations": [], "logprobs": []},
            )
        return out

    def chunk(self, chunk: ChatChunk) -> bytes:
        out = b""
        # A refusal that replaced an answer already started goes on as text.
        text = (chunk.content or "") + (chunk.refusal or "")
        if text:
            if self.open is None or self.open["type"] != "message":
                out += self._begin(_text_item(self.reply.item_id("msg"), "", "in_progress"))
            assert self.open is not None
            self.open["content"][0]["text"] += text
            out += self._emit(
                "response.output_text.delta",
                item_id=self.open["id"],
                output_index=len(self.reply.output) - 1,
                content_index=0,
                delta=text,
                logprobs=[],
            )
        for delta in chunk.tool_calls:
            item = self.calls.get(delta.index)
            if item is None:
                call = ToolCall(
                    id=delta.id or f"call_{self.reply.id[5:]}{delta.index}",
                    name=delta.name or "",
                    arguments="",
                )
                item = _call_item(self.reply.item_id("fc"), call, "in_progress")
                self.calls[delta.index] = item
                out += self._begin(item)
            if delta.arguments:
                item["arguments"] += delta.arguments
                out += self._emit(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=self.reply.output.index(item),
                    delta=delta.arguments,
                )
        if chunk.finish_reason is not None:
            self.finish = chunk.finish_reason
        return out

    def end(self, usage: Usage) -> bytes:
        out = self._close()
        if not self.reply.output:
            out += self._begin(_text_item(self.reply.item_id("msg"), "", "in_progress"))
            out += self._close()
        status, incomplete = _status(self.finish)
        body = self.reply.body(status, usage, incomplete=incomplete)
        self.reply.keep(body)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return out + self._emit(kind, response=body)

    def error(self, exc: ProviderError) -> bytes:
        error = {"code": exc.code, "message": exc.message}
        return self._emit("error", code=exc.code, message=exc.message, param=None) + self._emit(
            "response.failed", response=self.reply.body("failed", error=error)
        )


def _copy(item: dict[str, Any]) -> dict[str, Any]:
    out = dict(item)
    if "content" in out:
        out["content"] = []
    return out


# --- views --------------------------------------------------------------------------


def create(request: HttpRequest, ctx: CallContext) -> HttpResponseBase:
    ctx.endpoint = "responses"
    principal = authenticate(request, ctx)
    body = pipeline.read_json(request, ctx)

    def history(response_id: str) -> list[Message] | None:
        return store.response_conversation(team_id=principal.team_id, response_id=response_id)

    data = responses_input(body, history)
    pipeline.note_session(request, data.chat)
    reply = Reply(ctx, data)
    if data.chat.request.stream:
        stream, first = pipeline.start_stream(request, ctx, principal, data.chat)
        return pipeline.stream_response(ctx, stream, first, ResponsesEncoder(reply))
    result = pipeline.complete_chat(request, ctx, principal, data.chat)
    return pipeline.served_json(ctx, _complete(result, reply))


def detail(request: HttpRequest, ctx: CallContext, response_id: str) -> HttpResponse:
    principal = authenticate(request, ctx)
    missing = ResponseNotFound(f"No response with id '{response_id}' was found.")
    if len(response_id) > MAX_ID or "/" in response_id:
        raise missing
    if request.method == "DELETE":
        if not store.response_delete(team_id=principal.team_id, response_id=response_id):
            raise missing
        return json_response({"id": response_id, "object": "response", "deleted": True})
    row = store.response_get(team_id=principal.team_id, response_id=response_id)
    if row is None:
        raise missing
    return json_response(row.body)
