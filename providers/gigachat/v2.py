"""OpenAI <-> GigaChat v2 (``/v2/chat/completions``) translation: pure functions.

The v2 contract is what the official SDK's resource methods use since 0.2
(``client.chat.completions``). Wire facts, from the SDK's models and its
recorded traffic (``tests/integration/cassettes/test_primary_*.yaml`` in
``ai-forever/gigachat``, June 2026):

* Messages carry ``content`` as a list of parts: ``{"text"}``,
  ``{"function_call": {"name", "arguments": {...}}}``,
  ``{"function_result": {"name", "result": ...}}``. Tool results travel in
  ``role: "tool"`` messages.
* Client functions are one tool: ``tools: [{"functions": {"specifications":
  [{"name", "description", "parameters"}]}}]``; the policy is
  ``tool_config: {"mode": "auto" | "forced" | "any", "function_name"}``.
* An answer with calls carries a state id (answers spell it
  ``tool_state_id``, requests ``tools_state_id``) that must be echoed on the
  assistant turn and on the tool results that follow it.
* Sampling and friends move under ``model_options`` (``temperature``,
  ``top_p``, ``max_tokens``, ``repetition_penalty``, ``update_interval``,
  ``reasoning: {"effort"}``, ``response_format: {"type": "json_schema",
  "schema", "strict"}``); ``profanity_check`` is spelled ``disable_filter``
  (inverted) and ``flags`` stays top-level.
* Answers: ``{"model": "GigaChat-3-Ultra:32.3.18.5", "created_at",
  "messages": [...], "finish_reason", "usage": {"input_tokens",
  "input_tokens_details": {"prompt_tokens", "cached_tokens"},
  "output_tokens", "total_tokens"}}``.
* Streams are SSE with named events (``response.message.delta``, then
  ``response.message.done`` carrying ``finish_reason`` and usage) and no
  ``data: [DONE]``.

OpenAI clients know nothing of the state id, so the adapter carries it for
them inside the tool-call ids: ``call_<state id>_<n>`` for the n-th call of
an answer. The id comes back with the client's history, on the assistant
turn and on each tool result, so no server-side store is needed: any
worker, after any restart, can rebuild the request (a store keyed by call
id would need Redis, a TTL and a failure mode for evicted entries).
Calls without a state id get ids stable in their content, as on v1.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from providers.base import (
    ChatRequest,
    FinishReason,
    Message,
    ToolCall,
    Usage,
)
from providers.gigachat.mapping import (
    FINISH_REASONS,
    JSON_MODE_INSTRUCTION,
    arguments_object,
    dumps,
    function_specs,
    refuse_non_text,
    sampling,
    tool_call_id,
    unknown_tool_call,
)

#: v2 ``model_options`` filled from same-named catalog options / request extras.
MODEL_OPTIONS = ("repetition_penalty", "update_interval")
_STATE_CALL_ID = re.compile(r"^call_(?P<state>[0-9A-Za-z-]{8,64})_(?P<index>\d{1,3})$")
_VERSION_SUFFIX = re.compile(r"/v\d+$")


@dataclass(slots=True)
class PlanV2:
    """What the response side must undo from the request side."""

    stops: list[str] = field(default_factory=list)
    json_mode: bool = False
    # parallel_tool_calls: false keeps the first call of an answer only.
    single_call: bool = False


def chat_url(base_url: str) -> str:
    """Return the v2 chat URL for a catalog ``base_url`` (``.../api/v1`` or ``.../v1``).

    The official SDK derives it the same way: the trailing ``/vN`` becomes
    ``/v2/chat/completions``.
    """
    base = base_url.rstrip("/")
    if _VERSION_SUFFIX.search(base):
        return _VERSION_SUFFIX.sub("/v2/chat/completions", base)
    return base + "/v2/chat/completions"


def call_id(state_id: str | None, index: int, name: str, arguments: Any) -> str:
    """Return the OpenAI id of the ``index``-th call of an answer."""
    if state_id:
        return f"call_{state_id}_{index}"
    return tool_call_id(name, arguments, None)


def state_from_call_id(value: str | None) -> str | None:
    """Return the state id carried in one of our tool-call ids, if any."""
    match = _STATE_CALL_ID.match(value or "")
    return match.group("state") if match else None


def _text(provider: str, message: Message, param: str) -> str:
    refuse_non_text(provider, message, param)
    return message.text()


def _result_value(text: str) -> Any:
    """A tool result as GigaChat wants it: JSON when it is JSON, else the text."""
    try:
        value = orjson.loads(text) if text.strip() else {}
    except orjson.JSONDecodeError:
        return {"result": text}
    return value if isinstance(value, dict) else {"result": value}


def messages_to_v2(provider: str, messages: list[Message]) -> list[dict[str, Any]]:
    """Translate OpenAI messages to v2 messages (one system message, in front)."""
    system: dict[str, Any] | None = None
    out: list[dict[str, Any]] = []
    calls: dict[str, tuple[str, str | None]] = {}  # call id -> (name, state id)
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        role = message.role
        if role in ("system", "developer"):
            part = {"text": _text(provider, message, param)}
            if system is None:
                system = {"role": "system", "content": [part]}
            else:
                out.append({"role": "user", "content": [part]})
        elif role == "assistant" and message.tool_calls:
            parts: list[dict[str, Any]] = []
            text = _text(provider, message, param)
            if text:
                parts.append({"text": text})
            state: str | None = None
            for position, call in enumerate(message.tool_calls):
                state = state or state_from_call_id(call.id)
                calls[call.id] = (call.name, state_from_call_id(call.id))
                arguments = arguments_object(
                    provider, call, f"{param}.tool_calls[{position}].function.arguments"
                )
                parts.append({"function_call": {"name": call.name, "arguments": arguments}})
            turn: dict[str, Any] = {"role": "assistant", "content": parts}
            if state:
                turn["tools_state_id"] = state
            out.append(turn)
        elif role == "tool":
            name, state = calls.get(message.tool_call_id or "", (message.name or "", None))
            if not name:
                raise unknown_tool_call(provider, param)
            result: dict[str, Any] = {
                "role": "tool",
                "content": [
                    {"function_result": {"name": name, "result": _result_value(message.text())}}
                ],
            }
            if state:
                result["tools_state_id"] = state
            out.append(result)
        else:
            v2_role = "assistant" if role == "assistant" else "user"
            out.append({"role": v2_role, "content": [{"text": _text(provider, message, param)}]})
    return [system, *out] if system is not None else out


def _tool_config(request: ChatRequest, names: set[str]) -> dict[str, str] | None:
    choice = request.tool_choice
    if choice == "required":
        return {"mode": "any"}
    if isinstance(choice, dict):
        chosen = (choice.get("function") or {}).get("name")
        if chosen in names:
            return {"mode": "forced", "function_name": str(chosen)}
    return {"mode": "auto"}


def chat_body_v2(
    provider: str, request: ChatRequest, options: Mapping[str, Any]
) -> tuple[dict[str, Any], PlanV2]:
    """Build the v2 ``/chat/completions`` body and the response plan."""
    plan = PlanV2(
        stops=[s for s in request.stop or [] if s],
        single_call=request.parallel_tool_calls is False,
    )
    messages = messages_to_v2(provider, request.messages)
    body: dict[str, Any] = {"model": request.model, "messages": messages}

    model_options = sampling(request, options, MODEL_OPTIONS)
    effort = request.extra.get("reasoning_effort", options.get("reasoning_effort"))
    if effort is not None:
        model_options["reasoning"] = {"effort": effort}
    profanity = request.extra.get("profanity_check", options.get("profanity_check"))
    if profanity is not None:
        body["disable_filter"] = not profanity
    flags = request.extra.get("flags", options.get("flags"))
    if flags is not None:
        body["flags"] = flags

    response_format = request.response_format or {}
    if response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema") or {}
        model_options["response_format"] = {
            "type": "json_schema",
            "schema": spec.get("schema") or {"type": "object"},
            "strict": bool(spec.get("strict", True)),
        }
    elif response_format.get("type") == "json_object":
        _ask_for_json(messages)
        plan.json_mode = True
    if model_options:
        body["model_options"] = model_options

    if request.tools and request.tool_choice != "none":
        body["tools"] = [{"functions": {"specifications": function_specs(request.tools)}}]
        config = _tool_config(request, {tool.name for tool in request.tools})
        if config is not None:
            body["tool_config"] = config
    if request.stream:
        body["stream"] = True
    return body, plan


def _ask_for_json(messages: list[dict[str, Any]]) -> None:
    if messages and messages[0]["role"] == "system":
        parts = messages[0]["content"]
        text = parts[0].get("text", "") if parts else ""
        messages[0]["content"] = [
            {"text": f"{text}\n\n{JSON_MODE_INSTRUCTION}" if text else JSON_MODE_INSTRUCTION}
        ]
    else:
        messages.insert(0, {"role": "system", "content": [{"text": JSON_MODE_INSTRUCTION}]})


def state_id(message: Mapping[str, Any]) -> str | None:
    """Return a v2 message's state id under either spelling."""
    value = message.get("tools_state_id") or message.get("tool_state_id")
    return str(value) if value else None


def finish_reason_v2(value: Any, *, has_call: bool) -> FinishReason | None:
    """Map a v2 finish reason (the v1 vocabulary) to OpenAI's."""
    if not value:
        return None
    if value not in FINISH_REASONS:
        return FinishReason.TOOL_CALLS if has_call else FinishReason.STOP
    return FINISH_REASONS[value]


def usage_from_v2(data: Any) -> Usage:
    """Read v2 usage into OpenAI's terms (cached tokens inside prompt tokens).

    Recorded traffic shows ``input_tokens == input_tokens_details.prompt_tokens``
    with no cache hit, so whether ``input_tokens`` includes the cached part is
    not observable there. Taking the larger of ``input_tokens`` and
    ``prompt_tokens + cached_tokens`` is right under either reading, and the
    billed part is the processed ``prompt_tokens`` (cached tokens are not
    billed by Sber).
    """
    if not isinstance(data, dict):
        return Usage()
    details = data.get("input_tokens_details") or {}
    cached = int(details.get("cached_tokens") or 0)
    total_input = int(data.get("input_tokens") or 0)
    processed_raw = details.get("prompt_tokens")
    processed = int(processed_raw) if processed_raw is not None else max(0, total_input - cached)
    output_details = data.get("output_tokens_details") or {}
    return Usage(
        prompt_tokens=max(total_input, processed + cached),
        completion_tokens=int(data.get("output_tokens") or 0),
        cached_tokens=cached,
        billed_prompt_tokens=processed,
        # Not seen in recorded traffic (uncertain): read where OpenAI's
        # Responses API puts it, if GigaChat ever sends it.
        reasoning_tokens=int(output_details.get("reasoning_tokens") or 0),
    )


@dataclass(slots=True)
class AnswerV2:
    """The OpenAI view of a v2 answer's messages."""

    content: str | None
    tool_calls: list[ToolCall]
    # Text of ``role: "reasoning"`` messages (gpt2giga reads it so).
    reasoning: str | None = None


def read_messages(messages: Any, plan: PlanV2, offset: int = 0) -> AnswerV2:
    """Collect text and calls from answer messages; ``offset`` numbers later calls.

    Text of ``role: "reasoning"`` messages is the model's reasoning, kept
    apart from the answer (their ``tool_execution`` parts are progress of a
    built-in tool, which OpenAI has no field for).
    """
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[ToolCall] = []
    for message in messages or []:
        if not isinstance(message, dict):
            continue
        state = state_id(message)
        into = thoughts if message.get("role") == "reasoning" else texts
        for part in message.get("content") or []:
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("text"), str):
                into.append(part["text"])
            call = part.get("function_call")
            if isinstance(call, dict) and call.get("name"):
                arguments = call.get("arguments")
                if arguments is None:
                    arguments = {}
                index = offset + len(calls)
                calls.append(
                    ToolCall(
                        id=call_id(state, index, str(call["name"]), arguments),
                        name=str(call["name"]),
                        arguments=arguments if isinstance(arguments, str) else dumps(arguments),
                    )
                )
    if plan.single_call:
        calls = calls[:1]
    return AnswerV2(
        content="".join(texts) if texts else None,
        tool_calls=calls,
        reasoning="".join(thoughts) or None,
    )
