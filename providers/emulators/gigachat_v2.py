"""The GigaChat emulator's v2 chat contract (``POST /api/v2/chat/completions``).

Shapes follow the official SDK's v2 models and its recorded traffic
(``ai-forever/gigachat`` ``tests/integration/cassettes/test_primary_*``):
content as a list of parts (``text``, ``function_call``, ``function_result``),
tool results in ``role: "tool"`` messages, client functions as
``tools: [{"functions": {"specifications": [...]}}]``, ``tool_config.mode``
``auto|forced|any``, sampling under ``model_options``, answers with
``tool_state_id`` on the assistant message, top-level ``finish_reason`` and
``usage`` (``input_tokens``, ``input_tokens_details.{prompt_tokens,
cached_tokens}``, ``output_tokens``, ``total_tokens``), and SSE streams of
named events (``response.message.delta`` ..., ``response.message.done``)
without ``data: [DONE]``.

Deterministic behaviour on top of the v1 rules:

* Calls: with client functions and mode ``forced``/``any``, or the last user
  text mentioning "weather", the answer calls the forced function (else the
  first "weather" one, else the first) once per "in <City>" in the text: two
  cities give two parallel calls in one answer.
* A ``tool`` message must carry the ``tools_state_id`` of the answer whose
  call it answers (422 otherwise), and so must that assistant turn: the
  emulator remembers the state ids it issued.
* After tool results: ``"Ответ: Function result: "`` + the results' JSON.
* ``usage.input_tokens`` counts the whole prompt; the cached part (same
  ``X-Session-ID`` as v1) is in ``input_tokens_details.cached_tokens`` and
  ``prompt_tokens`` is the rest.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from typing import Any, Protocol

import orjson

from providers.emulators import gigachat_text as replies
from providers.emulators.base import (
    HTTPError,
    Request,
    Response,
    StreamResponse,
    json_response,
)
from providers.emulators.openai import _split_text, count_tokens

__all__ = ["V2_PATH", "ChatV2"]

V2_PATH = "/api/v2/chat/completions"
TOOL_MODES = ("auto", "forced", "any", "none")
MAX_STATES = 10_000


class Host(Protocol):
    """What the v2 handler uses of the GigaChat emulator (auth, knobs, caches)."""

    config: Any

    def _body(self, request: Request) -> dict[str, Any]: ...
    def _known_model(self, body: dict[str, Any], types: Any) -> str: ...
    def _functions(self, raw: object, *, strict: bool) -> list[dict[str, Any]]: ...
    def _session_cache(self, request: Request, prompt_tokens: int) -> int: ...
    def _x_headers(self, request: Request) -> list[tuple[str, str]]: ...


def _invalid(message: str) -> HTTPError:
    return HTTPError(422, f"Invalid params: {message}")


def _parts(message: dict[str, Any], index: int) -> list[dict[str, Any]]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"text": content}]
    if not isinstance(content, list) or not all(isinstance(p, dict) for p in content):
        raise _invalid(f"messages[{index}].content must be a list of parts")
    return content


def _text_of(message: dict[str, Any]) -> str:
    return " ".join(
        str(part["text"])
        for part in message.get("content") or []
        if isinstance(part, dict) and isinstance(part.get("text"), str)
    )


class ChatV2:
    """The v2 chat handler; one per emulator, sharing its knobs and sessions."""

    def __init__(self, emulator: Host) -> None:
        """Remember the emulator whose auth, knobs and helpers the handler uses."""
        self.emulator = emulator
        # tools_state_id -> function names called in that answer (recent ones).
        self.states: OrderedDict[str, list[str]] = OrderedDict()

    def handle(self, request: Request) -> Response | StreamResponse:
        """Handle ``POST /api/v2/chat/completions`` (plain and SSE)."""
        emulator = self.emulator
        body = emulator._body(request)
        model = emulator._known_model(body, ("chat",))
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _invalid("messages must be a non-empty array")
        specs = self._specifications(body.get("tools"))
        config = body.get("tool_config") or {}
        mode = config.get("mode", "auto") if isinstance(config, dict) else None
        if mode not in TOOL_MODES:
            raise _invalid("tool_config.mode must be one of auto, forced, any")
        forced = config.get("function_name")
        if mode == "forced" and not any(s["name"] == forced for s in specs):
            raise _invalid(f"tool_config.function_name {forced!r} is not in tools")
        self._check_history(messages)
        options = body.get("model_options") or {}
        if not isinstance(options, dict):
            raise _invalid("model_options must be an object")
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise HTTPError(400, "Your request contains invalid JSON syntax.")

        last = messages[-1]
        last_user = next((_text_of(m) for m in reversed(messages) if m.get("role") == "user"), "")
        places = [p.rstrip("?.!,") for p in replies.PLACE_RE.findall(last_user)] or ["Moscow"]
        state_id: str | None = None
        parts: list[dict[str, Any]]
        wants_call = (
            bool(specs)
            and mode != "none"
            and last.get("role") == "user"
            and (mode in ("forced", "any") or bool(replies.WEATHER_RE.search(last_user)))
        )
        if wants_call:
            spec = next(
                (s for s in specs if s["name"] == forced),
                next((s for s in specs if "weather" in s["name"].lower()), specs[0]),
            )
            parts = [
                {
                    "function_call": {
                        "name": spec["name"],
                        "arguments": replies.fake_value(
                            "", {"type": "object", **(spec.get("parameters") or {})}, place
                        ),
                    }
                }
                for place in places
            ]
            state_id = str(uuid.uuid4())
            self.states[state_id] = [spec["name"]] * len(parts)
            while len(self.states) > MAX_STATES:
                self.states.popitem(last=False)
            finish = "function_call"
            output_tokens = sum(
                count_tokens(spec["name"]) + count_tokens(orjson.dumps(p).decode()) for p in parts
            )
        else:
            text = self._text_reply(messages, options, last_user, places[0])
            words = text.split()
            finish = "stop"
            limit = options.get("max_tokens")
            if isinstance(limit, int) and len(words) > limit:
                words, finish = words[:limit], "length"
                text = " ".join(words)
            parts = [{"text": text}]
            output_tokens = len(words)

        input_tokens = 5 * len(specs) + sum(
            1 + count_tokens(orjson.dumps(m.get("content") or "").decode()) for m in messages
        )
        cached = min(input_tokens, emulator._session_cache(request, input_tokens))
        usage = {
            "input_tokens": input_tokens,
            "input_tokens_details": {
                "prompt_tokens": input_tokens - cached,
                "cached_tokens": cached,
            },
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        }
        served = f"{model}:{emulator.config.model_version}"
        created = int(time.time())
        message: dict[str, Any] = {"role": "assistant", "content": parts}
        if state_id:
            message["tool_state_id"] = state_id
        answer = [message]
        reasoning = options.get("reasoning")
        thought = replies.reasoning_text(
            reasoning.get("effort") if isinstance(reasoning, dict) else None, last_user
        )
        if thought is not None and not state_id:
            # The model's reasoning comes as a message of its own, before the
            # answer (the SDK's "reasoning" role, read by gpt2giga).
            answer.insert(0, {"role": "reasoning", "content": [{"text": thought}]})
        headers = emulator._x_headers(request)
        if stream:
            return self._stream(served, created, answer, finish, usage, headers)
        return json_response(
            {
                "model": served,
                "created_at": created,
                "messages": answer,
                "finish_reason": finish,
                "usage": usage,
            },
            headers=headers,
        )

    def _specifications(self, tools: Any) -> list[dict[str, Any]]:
        if tools is None:
            return []
        if not isinstance(tools, list):
            raise _invalid("tools must be an array")
        specs: list[dict[str, Any]] = []
        for tool in tools:
            if not isinstance(tool, dict):
                raise _invalid("every tool must be an object")
            functions = tool.get("functions")
            if functions is None:
                continue  # a built-in tool (web_search ...): not emulated
            found = functions.get("specifications") if isinstance(functions, dict) else None
            if not isinstance(found, list):
                raise _invalid("tools[].functions.specifications must be an array")
            specs += found
        return self.emulator._functions(specs, strict=self.emulator.config.strict_schemas)

    def _check_history(self, messages: list[Any]) -> None:
        pending: dict[str, list[str]] = {}
        for index, message in enumerate(messages):
            if not isinstance(message, dict):
                raise HTTPError(400, "Your request contains invalid JSON syntax.")
            role = message.get("role")
            if role not in ("system", "user", "assistant", "tool"):
                raise _invalid(f"messages[{index}].role is unknown: {role!r}")
            if role == "system" and index != 0:
                raise _invalid("system message must be the first message")
            parts = _parts(message, index)
            state = message.get("tools_state_id")
            calls = [p["function_call"] for p in parts if isinstance(p.get("function_call"), dict)]
            results = [
                p["function_result"] for p in parts if isinstance(p.get("function_result"), dict)
            ]
            if calls:
                if role != "assistant":
                    raise _invalid(f"messages[{index}]: function_call is only for assistant")
                if state not in self.states:
                    raise _invalid(f"messages[{index}].tools_state_id is missing or unknown")
                pending[str(state)] = [str(c.get("name")) for c in calls]
            if role == "tool":
                if not results:
                    raise _invalid(f"messages[{index}]: a tool message needs a function_result")
                names = pending.get(str(state))
                if names is None:
                    raise _invalid(
                        f"messages[{index}].tools_state_id must name the call it answers"
                    )
                for result in results:
                    if result.get("name") not in names:
                        raise _invalid(f"messages[{index}]: no call of {result.get('name')!r}")

    @staticmethod
    def _text_reply(
        messages: list[dict[str, Any]], options: dict[str, Any], last_user: str, place: str
    ) -> str:
        last = messages[-1]
        response_format = options.get("response_format")
        if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
            return orjson.dumps(
                replies.fake_value("", response_format.get("schema") or {}, place)
            ).decode()
        if last.get("role") == "tool":
            results = [
                orjson.dumps(part["function_result"].get("result")).decode()
                for message in messages
                if message.get("role") == "tool"
                for part in message["content"]
                if isinstance(part.get("function_result"), dict)
            ]
            return replies.REPLY_PREFIX + "Function result: " + " ".join(results)
        system = _text_of(messages[0]) if messages[0].get("role") == "system" else ""
        if replies.JSON_ASKED_RE.search(system):
            document = {"answer": "Echo: " + replies.echo_words(last_user)}
            return "```json\n" + orjson.dumps(document).decode() + "\n```"
        return replies.REPLY_PREFIX + "Echo: " + replies.echo_words(last_user)

    def _stream(
        self,
        served: str,
        created: int,
        answer: list[dict[str, Any]],
        finish: str,
        usage: dict[str, Any],
        headers: list[tuple[str, str]],
    ) -> StreamResponse:
        base = {"model": served, "created_at": created}

        def event(name: str, payload: dict[str, Any]) -> bytes:
            return f"event: {name}\n".encode() + b"data: " + orjson.dumps(payload) + b"\n\n"

        frames: list[bytes] = []
        message = answer[-1]
        for thought in answer[:-1]:
            frames.append(event("response.message.delta", {**base, "messages": [thought]}))
        text_parts = [p for p in message["content"] if "text" in p]
        if text_parts:
            pieces = _split_text(text_parts[0]["text"], self.emulator.config.stream_tokens)
            for position, piece in enumerate(pieces or [""]):
                delta: dict[str, Any] = {"content": [{"text": piece}]}
                if position == 0:
                    delta["role"] = "assistant"
                frames.append(event("response.message.delta", {**base, "messages": [delta]}))
        else:
            frames.append(event("response.message.delta", {**base, "messages": [message]}))
        frames.append(
            event("response.message.done", {**base, "finish_reason": finish, "usage": usage})
        )
        return StreamResponse(
            frames=frames,
            terminator=None,
            headers=headers,
            malformed_frame=b'event: response.message.delta\ndata: {"messages": [\n\n',
        )
