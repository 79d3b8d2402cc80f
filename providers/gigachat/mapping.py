"""OpenAI <-> GigaChat v1 translation: pure functions, no I/O.

Request side (OpenAI -> GigaChat):

* Roles: the first ``system``/``developer`` message becomes the one
  ``system`` message GigaChat allows and moves to the front; later ones
  become ``user`` (GigaChat answers 422 to a second system message).
  ``tool`` becomes ``function`` with the function's ``name`` (looked up from
  the matching call) and its content coerced to a JSON object string
  (objects pass, other JSON and plain text are wrapped as ``{"result": ...}``,
  empty is ``{}``).
* Assistant ``tool_calls``: GigaChat takes one function call per assistant
  turn, so an OpenAI turn with N parallel calls and their N results becomes
  N (call, result) pairs in call order; nothing is dropped. Arguments travel
  as a JSON object, not a string.
* Tool-call ids: GigaChat has none; the adapter makes them up. A call that
  came with a ``functions_state_id`` gets ``call_<functions_state_id>``,
  others ``call_<24 hex of sha256(name, arguments)>`` (stable: the same call
  gets the same id in a plain and a streamed answer). When a client sends
  history back, a ``call_<uuid>`` id is turned back into the
  ``functions_state_id`` GigaChat expects.
* ``tools``/``tool_choice`` -> ``functions``/``function_call``: ``auto`` ->
  ``"auto"``, ``none`` -> ``"none"`` (functions still sent, so history with
  function messages stays valid), a named function -> ``{"name": ...}``,
  ``required`` -> the only tool by name, or ``"auto"`` when there are
  several (GigaChat cannot force "some" call).
* ``response_format`` ``json_schema``: by default emulated with a function
  (as Sber's own gpt2giga proxy does): a synthetic function whose parameters
  are the schema (wrapped in ``{"value": ...}`` when the schema is not an
  object), called by force; its arguments come back as the message content
  with ``finish_reason: stop``. With client tools present the call is not
  forced, so the model may still call a tool. ``options.response_format:
  native`` sends GigaChat's own (beta) ``response_format`` instead.
  ``json_object`` (LangChain's ``json_mode``) has no GigaChat equivalent: an
  instruction to answer with bare JSON is added to the system message and a
  Markdown fence around the whole answer is removed (non-stream answers).
* Tool parameter schemas go through :func:`gigachat_schema` (``$ref``
  inlined, ``Optional`` unions and type arrays reduced, ``properties`` and
  ``items`` filled in; the rules of Sber's gpt2giga).
* ``functions_state_id`` is echoed on the assistant turn that made the call
  (Sber's docs); a 422 to it makes the adapter retry once without the ids.
* Sampling: ``temperature: 0`` becomes ``0.001`` (GigaChat rejects 0; the
  docs say values up to 0.001 select the most deterministic mode);
  ``top_p`` and ``max_tokens`` pass through. ``stop`` is not a GigaChat
  field: the adapter cuts the output at the first stop sequence itself.
  ``presence_penalty``, ``frequency_penalty``, ``seed``, ``n`` (always 1),
  ``logit_bias``, ``parallel_tool_calls`` are ignored. GigaChat's own
  ``repetition_penalty``, ``update_interval``, ``profanity_check``,
  ``flags`` and ``reasoning_effort`` come from the catalog options and
  ``ChatRequest.extra``.

Response side: ``function_call`` -> one ``tool_calls`` entry with the
arguments re-serialised as a JSON string; finish reasons ``stop``,
``length``, ``function_call`` -> ``tool_calls``, ``blacklist`` ->
``content_filter`` (the canned refusal text is kept as content), ``error``
(invalid function arguments) -> ``tool_calls`` if a call came back, else
``stop``; usage: OpenAI ``prompt_tokens`` = GigaChat ``prompt_tokens`` +
``precached_prompt_tokens`` (GigaChat reports the cached part on top of the
processed part), ``cached_tokens`` = ``precached_prompt_tokens``, and only
GigaChat's own ``prompt_tokens`` are billed (``billed_prompt_tokens``).
``model`` ``"GigaChat-2-Max:2.0.28.2"`` gives ``model_version`` ``"2.0.28.2"``.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from providers.base import ChatRequest, FinishReason, Message, Tool, ToolCall, Usage
from providers.errors import ProviderError
from xrouter_site.errors import ErrorCode

FINISH_REASONS: dict[str, FinishReason] = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "function_call": FinishReason.TOOL_CALLS,
    "blacklist": FinishReason.CONTENT_FILTER,
}
#: GigaChat fields a catalog (``options``) or a request (``extra``) may set.
PASSTHROUGH_FIELDS = (
    "repetition_penalty",
    "update_interval",
    "profanity_check",
    "flags",
    "reasoning_effort",
)
SCHEMA_FUNCTION_DEFAULT = "json_response"
_FUNCTION_NAME_BAD = re.compile(r"[^A-Za-z0-9_.-]")
_DETERMINISTIC_TEMPERATURE = 0.001


#: ``format`` values GigaChat accepts in a function schema; others are dropped.
SCHEMA_FORMATS = frozenset({"date", "date-time", "time"})
_UNION_KEYS = ("anyOf", "oneOf")


def gigachat_schema(schema: Any) -> dict[str, Any]:
    """Return a function-parameters schema GigaChat takes (see the module docs).

    GigaChat answers 422 to, or silently ignores, parts of JSON Schema that
    OpenAI clients send as a matter of course (pydantic's ``$ref``/``$defs``
    and ``anyOf: [X, {"type": "null"}]`` for ``Optional[X]``, type arrays).
    The rules follow Sber's gpt2giga proxy: inline local ``$ref``s, replace
    a union by its first non-null member (the union's own ``description``
    and ``default`` win), pick the first non-null type of a type array, give
    every object ``properties`` and every array ``items``, infer a missing
    ``type`` (from ``enum`` values, ``properties`` or ``items``), and drop
    ``format`` values GigaChat does not know.
    """
    if not isinstance(schema, dict):
        return {"type": "object", "properties": {}}
    defs = {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}
    result = _normalise_schema(schema, defs, depth=0)
    result.setdefault("type", "object")
    if result["type"] == "object":
        result.setdefault("properties", {})
    return result


def _inferred_type(schema: dict[str, Any], default: str) -> str:
    if "properties" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    for value in schema.get("enum") or []:
        if isinstance(value, bool):
            return "boolean"
        if isinstance(value, int):
            return "integer"
        if isinstance(value, float):
            return "number"
        if isinstance(value, str):
            return "string"
    return default


def _normalise_schema(node: Any, defs: Mapping[str, Any], depth: int) -> Any:
    if not isinstance(node, dict) or depth > 32:
        # Depth-capped: a recursive $ref (a tree type) is cut, not followed forever.
        return node if isinstance(node, dict) else {}
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if ref.startswith(("#/$defs/", "#/definitions/")) and name in defs:
            target = {k: v for k, v in node.items() if k != "$ref"}
            return _normalise_schema({**defs[name], **target}, defs, depth + 1)
        return {k: v for k, v in node.items() if k != "$ref"} or {"type": "object"}
    out = {k: v for k, v in node.items() if k not in ("$defs", "definitions", *_UNION_KEYS)}
    for key in _UNION_KEYS:
        variants = node.get(key)
        if not isinstance(variants, list):
            continue
        concrete = [v for v in variants if not (isinstance(v, dict) and v.get("type") == "null")]
        if concrete:
            chosen = _normalise_schema(concrete[0], defs, depth + 1)
            out = {**chosen, **out}
    types = out.get("type")
    if isinstance(types, list):
        concrete_types = [t for t in types if t != "null"] or types
        out["type"] = concrete_types[0] if concrete_types else "string"
    if "format" in out and out["format"] not in SCHEMA_FORMATS:
        del out["format"]
    if "type" not in out:
        out["type"] = _inferred_type(out, "object")
    if out["type"] == "object":
        properties = out.get("properties")
        out["properties"] = (
            {name: _normalise_schema(value, defs, depth + 1) for name, value in properties.items()}
            if isinstance(properties, dict)
            else {}
        )
        if isinstance(out.get("additionalProperties"), dict):
            out["additionalProperties"] = _normalise_schema(
                out["additionalProperties"], defs, depth + 1
            )
    if out["type"] == "array":
        items = out.get("items")
        if isinstance(items, list):
            items = items[0] if items else None
        if isinstance(items, dict) and items:
            if "type" not in items and "$ref" not in items and not _has_union(items):
                items = {**items, "type": _inferred_type(items, "string")}
            out["items"] = _normalise_schema(items, defs, depth + 1)
        else:
            out["items"] = {"type": "string"}
    return out


def _has_union(node: Mapping[str, Any]) -> bool:
    return any(isinstance(node.get(key), list) for key in _UNION_KEYS)


@dataclass(slots=True)
class ChatPlan:
    """What the response side must undo from the request side."""

    # Name of the synthetic function emulating response_format, if any, and
    # whether the schema was wrapped under "value".
    schema_function: str | None = None
    schema_wrapped: bool = False
    stops: list[str] = field(default_factory=list)
    # response_format json_object: the answer is asked for as bare JSON and
    # a Markdown fence around it is taken off (non-stream answers).
    json_mode: bool = False


def bad_request(provider: str, message: str, param: str | None = None) -> ProviderError:
    """Return the error for a request GigaChat cannot take as it is."""
    return ProviderError(
        message,
        provider=provider,
        retryable=False,
        status=400,
        code=ErrorCode.INVALID_REQUEST,
        param=param,
    )


def dumps(value: Any) -> str:
    """Serialise to compact JSON text with non-ASCII kept (as the SDK sends)."""
    return orjson.dumps(value).decode()


def tool_call_id(name: str, arguments: Any, state_id: str | None) -> str:
    """Return a stable OpenAI tool-call id for a GigaChat function call."""
    if state_id:
        return f"call_{state_id}"
    canonical = orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256(name.encode() + b"\0" + canonical).hexdigest()[:24]
    return f"call_{digest}"


def state_id_from_call_id(call_id: str) -> str | None:
    """Return the ``functions_state_id`` encoded in our tool-call id, if any."""
    raw = call_id.removeprefix("call_")
    try:
        return str(uuid.UUID(raw)) if len(raw) == 36 else None
    except ValueError:
        return None


def function_result(text: str) -> str:
    """Coerce a tool result to the JSON-object string GigaChat requires."""
    if not text.strip():
        return "{}"
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = text
    if isinstance(value, dict):
        return dumps(value)
    return dumps({"result": value})


def arguments_object(provider: str, call: ToolCall, param: str) -> dict[str, Any]:
    """Return a tool call's arguments as the JSON object GigaChat (v1, v2) takes."""
    if not call.arguments.strip():
        return {}
    try:
        value = orjson.loads(call.arguments)
    except orjson.JSONDecodeError:
        raise bad_request(
            provider, f"The arguments of tool call {call.id} are not valid JSON.", param
        ) from None
    return value if isinstance(value, dict) else {"value": value}


def refuse_non_text(provider: str, message: Message, param: str) -> None:
    """Refuse content parts other than text, which GigaChat cannot take inline."""
    if not isinstance(message.content, list):
        return
    for part in message.content:
        if part.get("type") not in ("text", None):
            raise bad_request(
                provider,
                f"GigaChat through this gateway accepts text only; "
                f"'{part.get('type')}' content parts are not supported.",
                param,
            )


def _text(provider: str, message: Message, param: str) -> str:
    """Return a message's text (v1 joins text parts with newlines)."""
    refuse_non_text(provider, message, param)
    if isinstance(message.content, list):
        return "\n".join(
            str(part.get("text", "")) for part in message.content if part.get("type") == "text"
        )
    return message.text()


def messages_to_gigachat(provider: str, messages: list[Message]) -> list[dict[str, Any]]:
    """Translate OpenAI messages to GigaChat v1 messages (see module docs)."""
    system: dict[str, Any] | None = None
    out: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    index = 0
    while index < len(messages):
        message = messages[index]
        param = f"messages[{index}]"
        role = message.role
        if role in ("system", "developer"):
            text = _text(provider, message, param)
            if system is None:
                system = {"role": "system", "content": text}
            else:
                out.append({"role": "user", "content": text})
            index += 1
            continue
        if role == "assistant" and message.tool_calls:
            results: dict[str, Message] = {}
            unmatched: list[Message] = []
            following = index + 1
            while following < len(messages) and messages[following].role == "tool":
                result = messages[following]
                if result.tool_call_id and result.tool_call_id not in results:
                    results[result.tool_call_id] = result
                else:
                    unmatched.append(result)
                following += 1
            text = _text(provider, message, param)
            for position, call in enumerate(message.tool_calls):
                call_names[call.id] = call.name
                turn: dict[str, Any] = {
                    "role": "assistant",
                    "content": text if position == 0 else "",
                    "function_call": {
                        "name": call.name,
                        "arguments": arguments_object(
                            provider, call, f"{param}.tool_calls[{position}].function.arguments"
                        ),
                    },
                }
                state_id = state_id_from_call_id(call.id)
                if state_id:
                    turn["functions_state_id"] = state_id
                out.append(turn)
                answer = results.pop(call.id, None)
                if answer is not None:
                    out.append(
                        {
                            "role": "function",
                            "name": call.name,
                            "content": function_result(answer.text()),
                        }
                    )
            for result in [*results.values(), *unmatched]:
                out.append(_function_message(provider, result, call_names, param))
            index = following
            continue
        if role == "tool":
            out.append(_function_message(provider, message, call_names, param))
        elif role == "assistant":
            out.append({"role": "assistant", "content": _text(provider, message, param)})
        else:
            # "user", and any role GigaChat does not know, speak as the user.
            out.append({"role": "user", "content": _text(provider, message, param)})
        index += 1
    return [system, *out] if system is not None else out


def unknown_tool_call(provider: str, param: str) -> ProviderError:
    """Return the 400 for a tool message that answers no earlier call."""
    return bad_request(
        provider,
        "A tool message must answer a tool call made earlier in the conversation "
        "(unknown tool_call_id).",
        f"{param}.tool_call_id",
    )


def _function_message(
    provider: str, message: Message, call_names: Mapping[str, str], param: str
) -> dict[str, Any]:
    name = call_names.get(message.tool_call_id or "") or message.name
    if not name:
        raise unknown_tool_call(provider, param)
    return {"role": "function", "name": name, "content": function_result(message.text())}


def _schema_function_name(name: Any, taken: set[str]) -> str:
    base = _FUNCTION_NAME_BAD.sub("_", str(name or "")) or SCHEMA_FUNCTION_DEFAULT
    if base[0].isdigit():
        base = f"f_{base}"
    while base in taken:
        base = f"xrouter_{base}"
    return base


def sampling(
    request: ChatRequest, options: Mapping[str, Any], names: Iterable[str]
) -> dict[str, Any]:
    """Return temperature, top_p, max_tokens and the ``names`` options set.

    v1 puts them in the body, v2 in ``model_options``; a request's own value
    (``request.extra``) wins over the catalog default (``options``).
    """
    out: dict[str, Any] = {}
    if request.temperature is not None:
        out["temperature"] = request.temperature or _DETERMINISTIC_TEMPERATURE
    if request.top_p is not None:
        out["top_p"] = request.top_p
    if request.max_tokens is not None:
        out["max_tokens"] = request.max_tokens
    for name in names:
        value = request.extra.get(name, options.get(name))
        if value is not None:
            out[name] = value
    return out


def function_specs(tools: list[Tool]) -> list[dict[str, Any]]:
    """Return GigaChat function specifications (schemas normalised) for ``tools``."""
    specs = []
    for tool in tools:
        spec: dict[str, Any] = {"name": tool.name, "parameters": gigachat_schema(tool.parameters)}
        if tool.description:
            spec["description"] = tool.description
        specs.append(spec)
    return specs


def chat_body(
    provider: str, request: ChatRequest, options: Mapping[str, Any]
) -> tuple[dict[str, Any], ChatPlan]:
    """Build the GigaChat ``/chat/completions`` body and the response plan."""
    plan = ChatPlan(stops=[s for s in request.stop or [] if s])
    body: dict[str, Any] = {
        "model": request.model,
        "messages": messages_to_gigachat(provider, request.messages),
        **sampling(request, options, PASSTHROUGH_FIELDS),
    }

    functions = function_specs(request.tools)
    function_call: str | dict[str, str] | None = None
    choice = request.tool_choice
    if functions:
        if choice == "none":
            function_call = "none"
        elif choice == "required":
            function_call = {"name": functions[0]["name"]} if len(functions) == 1 else "auto"
        elif isinstance(choice, dict):
            chosen = (choice.get("function") or {}).get("name")
            function_call = {"name": chosen} if chosen else "auto"
        else:
            function_call = "auto"

    response_format = request.response_format or {}
    format_type = response_format.get("type")
    if format_type == "json_object":
        _ask_for_json(body["messages"])
        plan.json_mode = True
    if format_type == "json_schema":
        spec_in = response_format.get("json_schema") or {}
        schema = spec_in.get("schema") or {"type": "object"}
        if options.get("response_format") == "native":
            body["response_format"] = {
                "type": "json_schema",
                "schema": schema,
                "strict": bool(spec_in.get("strict", True)),
            }
        else:
            name = _schema_function_name(spec_in.get("name"), {f["name"] for f in functions})
            wrapped = schema.get("type") != "object"
            parameters = (
                {"type": "object", "properties": {"value": schema}, "required": ["value"]}
                if wrapped
                else schema
            )
            functions.append(
                {
                    "name": name,
                    "description": spec_in.get("description")
                    or "Give the final answer as the arguments of this function, "
                    "following its parameter schema exactly.",
                    "parameters": parameters,
                }
            )
            plan.schema_function = name
            plan.schema_wrapped = wrapped
            if function_call in (None, "none"):
                function_call = {"name": name}
    if functions:
        body["functions"] = functions
        body["function_call"] = function_call or "auto"
    if request.stream:
        body["stream"] = True
    return body, plan


JSON_MODE_INSTRUCTION = (
    "Answer with one valid JSON object and nothing else: no prose before or after it, "
    "no Markdown code fence."
)
_FENCED_JSON = re.compile(r"^\s*```(?:json)?\s*\n(?P<body>.*?)\n?\s*```\s*$", re.DOTALL)


def _ask_for_json(messages: list[dict[str, Any]]) -> None:
    """Emulate OpenAI's JSON mode, which GigaChat lacks, with a system instruction."""
    if messages and messages[0]["role"] == "system":
        text = messages[0]["content"]
        messages[0]["content"] = (
            f"{text}\n\n{JSON_MODE_INSTRUCTION}" if text else JSON_MODE_INSTRUCTION
        )
    else:
        messages.insert(0, {"role": "system", "content": JSON_MODE_INSTRUCTION})


def unfence_json(text: str) -> str:
    """Return ``text`` without a Markdown code fence wrapped around all of it."""
    match = _FENCED_JSON.match(text)
    return match.group("body").strip() if match else text


def model_version(served: str) -> str | None:
    """Return ``"2.0.28.2"`` from GigaChat's ``"GigaChat-2-Max:2.0.28.2"``."""
    _name, sep, version = served.partition(":")
    return version or None if sep else None


def without_state_ids(body: dict[str, Any]) -> dict[str, Any] | None:
    """Return ``body`` minus echoed ``functions_state_id`` s, or None if it had none."""
    messages = body.get("messages") or []
    if not any("functions_state_id" in message for message in messages):
        return None
    stripped = [
        {k: v for k, v in message.items() if k != "functions_state_id"} for message in messages
    ]
    return {**body, "messages": stripped}


def finish_reason(value: Any, *, has_call: bool) -> FinishReason | None:
    """Map a GigaChat finish reason to OpenAI's."""
    if not value:
        return None
    if value == "error" or value not in FINISH_REASONS:
        return FinishReason.TOOL_CALLS if has_call else FinishReason.STOP
    return FINISH_REASONS[value]


def usage_from_gigachat(data: Any) -> Usage:
    """Read GigaChat v1 usage into OpenAI's terms.

    GigaChat's ``prompt_tokens`` are the tokens it processed (and bills);
    ``precached_prompt_tokens`` come on top of them, unbilled. OpenAI's
    ``prompt_tokens`` include the cached part, so the two are added, the
    cached part is ``cached_tokens`` and ``billed_prompt_tokens`` keeps what
    Sber charges for.
    """
    if not isinstance(data, dict):
        return Usage()
    processed = int(data.get("prompt_tokens") or 0)
    cached = int(data.get("precached_prompt_tokens") or 0)
    return Usage(
        prompt_tokens=processed + cached,
        completion_tokens=int(data.get("completion_tokens") or 0),
        cached_tokens=cached,
        billed_prompt_tokens=processed,
    )


def schema_content(plan: ChatPlan, arguments: Any) -> str:
    """Return the JSON document a schema-function call carried."""
    if plan.schema_wrapped and isinstance(arguments, dict):
        arguments = arguments.get("value")
    return dumps(arguments if arguments is not None else {})


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """Return ``text`` up to the earliest stop sequence, and whether one was found."""
    positions = [pos for pos in (text.find(stop) for stop in stops) if pos >= 0]
    if not positions:
        return text, False
    return text[: min(positions)], True


class StopScanner:
    """Cut a streamed text at the first stop sequence across chunk borders.

    Holds back the last ``len(longest stop) - 1`` characters, which could be
    the start of a stop sequence that the next chunk completes.
    """

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.hold = max(len(stop) for stop in stops) - 1
        self.buffer = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add ``text``; return what can be sent now (nothing after a stop)."""
        if self.stopped:
            return ""
        self.buffer += text
        head, found = cut_at_stop(self.buffer, self.stops)
        if found:
            self.stopped = True
            self.buffer = ""
            return head
        keep = len(self.buffer) - self.hold
        if keep <= 0:
            return ""
        out, self.buffer = self.buffer[:keep], self.buffer[keep:]
        return out

    def flush(self) -> str:
        """Return the held-back tail at the end of the stream."""
        out, self.buffer = self.buffer, ""
        return out
