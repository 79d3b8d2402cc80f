"""OpenAI-compatible emulator (chat completions, embeddings, models).

Wire format follows the public OpenAI API: ``chat.completion`` and
``chat.completion.chunk`` objects, SSE streams ending in ``data: [DONE]``,
``usage`` with ``prompt_tokens_details.cached_tokens`` and errors shaped
``{"error": {"message", "type", "param", "code"}}``.

Deterministic behaviour (tests may rely on it):

* Authentication: every ``/v1`` route needs ``Authorization: Bearer <key>``
  with a non-empty key (exactly ``api_key`` when that knob is set), else 401.
* Reply text: ``"Ответ: Echo: " + <first 50 words of the last user message>``
  (``(empty)`` when it has no text).  The Cyrillic prefix exercises clients'
  UTF-8 handling.  When the last message has role ``tool`` the reply is
  ``"Ответ: Tool result: " + <first 50 words of its content>``.
* Tokens: a token is a whitespace-separated word.  ``prompt_tokens`` is the
  sum over messages of ``1 + words`` (text content parts and tool-call
  names/arguments count); ``completion_tokens`` is the words of the reply
  (for a tool call: words of the function name plus its arguments string).
  ``cached_tokens`` reports ``min(cached_tokens knob, prompt_tokens)``.
* ``stop``: the reply is cut before the earliest stop sequence
  (finish_reason ``stop``).  ``max_tokens``/``max_completion_tokens``: the
  reply keeps its first N words (finish_reason ``length`` if it was longer).
* Tools: when ``tools`` are given, ``tool_choice`` is not ``"none"`` and the
  last message is a user message containing the word "weather" (any case),
  or ``tool_choice`` is ``"required"`` or names a function, the reply is one
  ``tool_calls`` entry (finish_reason ``tool_calls``).  The function is the
  named one, else the first whose name contains "weather", else the first.
  Arguments fill each schema property: strings named like location/city/place
  get the capitalised word after "in" in the message (default "Moscow"),
  other strings "mock", enums their first value, numbers 1, booleans true.
* ``n`` must be 1.  Unknown models are accepted unless ``strict_models``.
* Streams: a role chunk, the content (or tool-call arguments) split on
  character boundaries into ``stream_tokens`` chunks (fewer if the text is
  shorter), a chunk carrying ``finish_reason``, then, with
  ``stream_options.include_usage``, a ``choices: []`` chunk with ``usage``
  (every earlier chunk then carries ``"usage": null``), then ``[DONE]``.
* Embeddings: unit-length vectors derived from sha256 of the input (token
  arrays hash their decimal form), ``embedding_dim`` floats (or
  ``dimensions``), rounded to float32 so ``encoding_format: "base64"``
  (little-endian float32) decodes to exactly the ``float`` values.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import secrets
import struct
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from providers.emulators.base import (
    ConfigError,
    Emulator,
    EmulatorConfig,
    HTTPError,
    Request,
    Response,
    StreamResponse,
    json_response,
    sse_response,
)

__all__ = ["EMULATOR", "MODELS", "OpenAIConfig", "OpenAIEmulator", "count_tokens"]

#: Model ids served by ``/v1/models``.
MODELS: tuple[str, ...] = ("gpt-mock", "gpt-mock-large", "text-embedding-mock")
MODELS_CREATED = 1_700_000_000
REPLY_PREFIX = "Ответ: "
ECHO_WORDS = 50
SYSTEM_FINGERPRINT = "fp_emulator"
VALID_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_WEATHER_RE = re.compile(r"\bweather\b", re.IGNORECASE)
_PLACE_RE = re.compile(r"\bin\s+([A-ZА-ЯЁ][\w-]*)")


@dataclass
class OpenAIConfig(EmulatorConfig):
    """Knobs of the OpenAI emulator on top of the common ones."""

    embedding_dim: int = field(
        default=8, metadata={"help": "embedding vector size when 'dimensions' is absent"}
    )
    api_key: str = field(
        default="", metadata={"help": "the only accepted bearer key (empty: any non-empty key)"}
    )
    strict_models: bool = field(
        default=False, metadata={"help": "404 for models not in /v1/models"}
    )
    cached_tokens: int = field(
        default=0, metadata={"help": "prompt tokens reported as cached (capped at prompt)"}
    )

    def validate(self) -> None:
        """Check the OpenAI knobs after the common ones."""
        super().validate()
        if not 1 <= self.embedding_dim <= 8192:
            raise ConfigError("embedding_dim must be within 1..8192", "embedding_dim")
        if self.cached_tokens < 0:
            raise ConfigError("cached_tokens must be >= 0", "cached_tokens")


def count_tokens(text: str) -> int:
    """Count tokens the emulator's way: whitespace-separated words."""
    return len(text.split())


def _content_text(content: object) -> str:
    """Return the text of a message ``content`` (string or list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict):
                text = part.get("text", part.get("refusal"))
                if isinstance(text, str):
                    texts.append(text)
        return " ".join(texts)
    return ""


def _bad(message: str, param: str | None, code: str | None = None) -> HTTPError:
    return HTTPError(400, message, param=param, code=code, error_type="invalid_request_error")


def _split_text(text: str, pieces: int) -> list[str]:
    """Split ``text`` into at most ``pieces`` non-empty runs of whole characters."""
    if not text:
        return []
    count = min(pieces, len(text))
    size, extra = divmod(len(text), count)
    out = []
    pos = 0
    for index in range(count):
        step = size + (1 if index < extra else 0)
        out.append(text[pos : pos + step])
        pos += step
    return out


@dataclass
class _Reply:
    """What the model "generated" for a chat request."""

    content: str | None
    tool_calls: list[dict[str, Any]]
    finish_reason: str
    completion_tokens: int
    # Shown reasoning (``reasoning_content``) and its tokens, which are part
    # of completion_tokens as OpenAI counts them.
    reasoning: str | None = None
    reasoning_tokens: int = 0


#: reasoning_effort values for which a thinking model reasons.
THINKING_EFFORTS = frozenset({"low", "medium", "high"})


class OpenAIEmulator(Emulator):
    """Emulates ``api.openai.com/v1`` for chat, embeddings and models."""

    #: Whether ``reasoning_effort`` makes the model show its reasoning as
    #: ``reasoning_content`` (DeepSeek-style surfaces do; OpenAI hides it).
    shows_reasoning = False

    kind = "openai"
    config_class = OpenAIConfig
    config: OpenAIConfig
    #: OpenAI sends ``"finish_reason": null`` on every unfinished stream chunk;
    #: Yandex's OpenAI surface leaves the key out (and its SDK relies on that).
    omit_null_finish_reason: ClassVar[bool] = False
    #: One tool call per "in <City>" of the question (else only the first).
    call_per_place: ClassVar[bool] = False
    #: Yandex's surface answers YandexGPT-style calls with the function name
    #: as the id, so one function called twice gives two equal ids.
    call_ids_are_names: ClassVar[bool] = False

    def served_model(self, model: str) -> str:
        """Return the model name as answers spell it (the request's, here)."""
        return model

    def register_routes(self) -> None:
        """Mount the OpenAI routes."""
        self.route("POST", "/v1/chat/completions", self.chat_completions)
        self.route("POST", "/v1/embeddings", self.embeddings)
        self.route("GET", "/v1/models", self.list_models)
        self.route("GET", "/v1/models/<path:model_id>", self.retrieve_model)

    def error_payload(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        error_type: str | None = None,
    ) -> object:
        """Return OpenAI's error shape, picking the type OpenAI uses per status."""
        if error_type is None:
            if status == 429:
                error_type, code = "requests", code or "rate_limit_exceeded"
            elif status >= 500:
                error_type = "server_error"
            else:
                error_type = "invalid_request_error"
        return {"error": {"message": message, "type": error_type, "param": param, "code": code}}

    # ---- shared checks ---------------------------------------------------

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization") or ""
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise HTTPError(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                error_type="invalid_request_error",
            )
        expected = self.config.api_key
        if expected and key != expected:
            shown = key[:3] + "*" * max(0, len(key) - 7) + key[-4:] if len(key) > 7 else "***"
            raise HTTPError(
                401,
                f"Incorrect API key provided: {shown}.",
                code="invalid_api_key",
                error_type="invalid_request_error",
            )

    def _body(self, request: Request) -> dict[str, Any]:
        self._authenticate(request)
        try:
            return request.json_object()
        except ValueError:
            raise _bad(
                "We could not parse the JSON body of your request. (HINT: This likely means "
                "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
                "payload, but what was sent was not valid JSON.)",
                None,
            ) from None

    def _model(self, body: dict[str, Any]) -> str:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _bad("you must provide a model parameter", "model")
        if self.config.strict_models and model not in MODELS:
            raise HTTPError(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                code="model_not_found",
                error_type="invalid_request_error",
            )
        return model

    # ---- chat --------------------------------------------------------------

    def chat_completions(self, request: Request) -> Response | StreamResponse:
        """Handle ``POST /v1/chat/completions`` (plain and streaming)."""
        body = self._body(request)
        model = self._model(body)
        messages = self._messages(body.get("messages"))

        n = body.get("n", 1)
        if n is not None and (isinstance(n, bool) or n != 1):
            raise _bad("The emulator only supports n=1.", "n")
        stream = body.get("stream", False)
        if stream is not None and not isinstance(stream, bool):
            raise _bad(f"Invalid type for 'stream': expected a boolean, got {stream!r}.", "stream")
        stream_options = body.get("stream_options")
        if stream_options is not None:
            if not stream:
                raise _bad(
                    "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                    "stream_options",
                )
            if not isinstance(stream_options, dict):
                raise _bad("'stream_options' must be an object.", "stream_options")
        include_usage = bool(stream_options and stream_options.get("include_usage") is True)

        max_tokens = None
        for name in ("max_completion_tokens", "max_tokens"):
            value = body.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise _bad(f"Invalid '{name}': integer below minimum value 1.", name)
            max_tokens = value
            break
        temperature = body.get("temperature")
        if temperature is not None and (
            isinstance(temperature, bool)
            or not isinstance(temperature, (int, float))
            or not 0 <= temperature <= 2
        ):
            raise _bad("Invalid 'temperature': must be a number within 0..2.", "temperature")
        stops = self._stops(body.get("stop"))
        tools = self._tools(body.get("tools"))
        tool_choice = body.get("tool_choice")

        reply = self._reply(messages, tools, tool_choice, max_tokens, stops)
        effort = body.get("reasoning_effort")
        if self.shows_reasoning and effort in THINKING_EFFORTS and not reply.tool_calls:
            last = _content_text(messages[-1].get("content"))
            reply.reasoning = f"Reasoning ({effort}): the user wrote {len(last.split())} words."
            reply.reasoning_tokens = count_tokens(reply.reasoning)
            reply.completion_tokens += reply.reasoning_tokens
        prompt_tokens = self._prompt_tokens(messages)
        usage = self._usage(prompt_tokens, reply.completion_tokens)
        usage["completion_tokens_details"]["reasoning_tokens"] = reply.reasoning_tokens
        completion_id = "chatcmpl-" + secrets.token_hex(12)
        created = int(time.time())
        if stream:
            return self._stream(completion_id, created, model, reply, usage, include_usage)

        message: dict[str, Any] = {
            "role": "assistant",
            "content": reply.content,
            "refusal": None,
            "annotations": [],
        }
        if reply.reasoning is not None:
            message["reasoning_content"] = reply.reasoning
        if reply.tool_calls:
            message["tool_calls"] = reply.tool_calls
        return json_response(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": self.served_model(model),
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": reply.finish_reason,
                    }
                ],
                "usage": usage,
                "service_tier": "default",
                "system_fingerprint": SYSTEM_FINGERPRINT,
            }
        )

    def _messages(self, messages: object) -> list[dict[str, Any]]:
        if messages is None:
            raise _bad("Missing required parameter: 'messages'.", "messages")
        if not isinstance(messages, list) or not messages:
            raise _bad(
                "Invalid 'messages': expected a non-empty array of message objects.",
                "messages",
            )
        for index, message in enumerate(messages):
            where = f"messages.[{index}]"
            if not isinstance(message, dict):
                raise _bad(f"Invalid type for '{where}': expected an object.", where)
            role = message.get("role")
            if role not in VALID_ROLES:
                raise _bad(
                    f"Invalid value for '{where}.role': {role!r}. Supported values are: "
                    + ", ".join(f"'{r}'" for r in sorted(VALID_ROLES))
                    + ".",
                    f"{where}.role",
                )
            content = message.get("content")
            if content is None:
                if role != "assistant":
                    raise _bad(
                        f"Missing required parameter: '{where}.content'.", f"{where}.content"
                    )
            elif not isinstance(content, (str, list)):
                raise _bad(
                    f"Invalid type for '{where}.content': expected a string or an array.",
                    f"{where}.content",
                )
            if role == "tool" and not isinstance(message.get("tool_call_id"), str):
                raise _bad(
                    f"Missing required parameter: '{where}.tool_call_id'.",
                    f"{where}.tool_call_id",
                )
        return messages

    @staticmethod
    def _stops(stop: object) -> list[str]:
        if stop is None:
            return []
        if isinstance(stop, str):
            return [stop] if stop else []
        if isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop):
            return [s for s in stop if s]
        raise _bad("Invalid 'stop': expected a string or an array of up to 4 strings.", "stop")

    @staticmethod
    def _tools(tools: object) -> list[dict[str, Any]]:
        if tools is None:
            return []
        if not isinstance(tools, list):
            raise _bad("Invalid type for 'tools': expected an array.", "tools")
        for index, tool in enumerate(tools):
            fn = tool.get("function") if isinstance(tool, dict) else None
            if (
                not isinstance(tool, dict)
                or tool.get("type") != "function"
                or not isinstance(fn, dict)
                or not isinstance(fn.get("name"), str)
                or not fn["name"]
            ):
                raise _bad(
                    f"Invalid 'tools[{index}]': expected {{'type': 'function', "
                    "'function': {'name': ...}}.",
                    f"tools[{index}]",
                )
        return tools

    @staticmethod
    def _prompt_tokens(messages: list[dict[str, Any]]) -> int:
        total = 0
        for message in messages:
            total += 1 + count_tokens(_content_text(message.get("content")))
            for call in message.get("tool_calls") or []:
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict):
                    total += count_tokens(str(fn.get("name", "")))
                    total += count_tokens(str(fn.get("arguments", "")))
        return total

    def _usage(self, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {
                "cached_tokens": min(self.config.cached_tokens, prompt_tokens),
                "audio_tokens": 0,
            },
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def _reply(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        tool_choice: object,
        max_tokens: int | None,
        stops: list[str],
    ) -> _Reply:
        last = messages[-1]
        last_text = _content_text(last.get("content"))
        if tools and tool_choice != "none" and last.get("role") == "user":
            forced = tool_choice == "required" or isinstance(tool_choice, dict)
            if forced or _WEATHER_RE.search(last_text):
                places = [m.rstrip("?.!,") for m in _PLACE_RE.findall(last_text)] or ["Moscow"]
                if not self.call_per_place:
                    places = places[:1]
                calls = [
                    self._tool_call(tools, tool_choice, place, len(messages) + index, index)
                    for index, place in enumerate(places)
                ]
                tokens = sum(
                    count_tokens(c["function"]["name"]) + count_tokens(c["function"]["arguments"])
                    for c in calls
                )
                return _Reply(None, calls, "tool_calls", tokens)

        if last.get("role") == "tool":
            text = REPLY_PREFIX + "Tool result: " + _first_words(last_text)
        else:
            user_text = next(
                (
                    _content_text(m.get("content"))
                    for m in reversed(messages)
                    if m.get("role") == "user"
                ),
                "",
            )
            text = REPLY_PREFIX + "Echo: " + _first_words(user_text)

        finish_reason = "stop"
        cut_at = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
        if cut_at >= 0:
            text = text[:cut_at]
        words = text.split(" ")
        if max_tokens is not None and count_tokens(text) > max_tokens:
            # Words are single-space separated by construction, so keeping the
            # first N split pieces keeps exactly N tokens.
            kept: list[str] = []
            seen = 0
            for word in words:
                if word:
                    if seen == max_tokens:
                        break
                    seen += 1
                kept.append(word)
            text = " ".join(kept).rstrip(" ")
            finish_reason = "length"
        return _Reply(text, [], finish_reason, count_tokens(text))

    def _tool_call(
        self,
        tools: list[dict[str, Any]],
        tool_choice: object,
        place: str,
        position: int,
        index: int,
    ) -> dict[str, Any]:
        functions = [t["function"] for t in tools]
        chosen: dict[str, Any] | None = None
        if isinstance(tool_choice, dict):
            wanted = (tool_choice.get("function") or {}).get("name")
            chosen = next((f for f in functions if f["name"] == wanted), None)
            if chosen is None:
                raise _bad(
                    f"Invalid 'tool_choice': function {wanted!r} is not in 'tools'.",
                    "tool_choice",
                )
        if chosen is None:
            chosen = next((f for f in functions if "weather" in f["name"].lower()), functions[0])
        params = chosen.get("parameters")
        properties = params.get("properties") if isinstance(params, dict) else None
        arguments: dict[str, Any] = {}
        if isinstance(properties, dict):
            for name, schema in properties.items():
                arguments[name] = _fake_value(name, schema, place)
        args_json = orjson.dumps(arguments).decode()
        digest = hashlib.sha256(f"{chosen['name']}|{args_json}|{position}".encode()).hexdigest()
        return {
            "id": chosen["name"] if self.call_ids_are_names else "call_" + digest[:24],
            "type": "function",
            "function": {"name": chosen["name"], "arguments": args_json},
        }

    def _stream(
        self,
        completion_id: str,
        created: int,
        model: str,
        reply: _Reply,
        usage: dict[str, Any],
        include_usage: bool,
    ) -> StreamResponse:
        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            payload: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.served_model(model),
                "service_tier": "default",
                "system_fingerprint": SYSTEM_FINGERPRINT,
                "choices": [{"index": 0, "delta": delta, "logprobs": None}],
            }
            if finish_reason is not None or not self.omit_null_finish_reason:
                payload["choices"][0]["finish_reason"] = finish_reason
            if include_usage:
                payload["usage"] = None
            return payload

        pieces = self.config.stream_tokens
        payloads: list[dict[str, Any]] = []
        for index, call in enumerate(reply.tool_calls):
            start: dict[str, Any] = {
                "tool_calls": [
                    {
                        "index": index,
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": call["function"]["name"], "arguments": ""},
                    }
                ]
            }
            if index == 0:
                start = {"role": "assistant", "content": None, **start, "refusal": None}
            payloads.append(chunk(start))
            for piece in _split_text(call["function"]["arguments"], pieces):
                payloads.append(
                    chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                )
        if not reply.tool_calls:
            payloads.append(chunk({"role": "assistant", "content": "", "refusal": None}))
            for thought in _split_text(reply.reasoning or "", 2):
                payloads.append(chunk({"reasoning_content": thought}))
            for piece in _split_text(reply.content or "", pieces):
                payloads.append(chunk({"content": piece}))
        payloads.append(chunk({}, reply.finish_reason))
        if include_usage:
            final = chunk({})
            final["choices"] = []
            final["usage"] = usage
            payloads.append(final)
        return sse_response(payloads)

    # ---- embeddings ----------------------------------------------------------

    def embeddings(self, request: Request) -> Response:
        """Handle ``POST /v1/embeddings`` with float or base64 encoding."""
        body = self._body(request)
        model = self._model(body)
        items = self._embedding_inputs(body.get("input"))
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise _bad(
                f"Invalid value for 'encoding_format': {encoding!r}. "
                "Supported values are: 'float' and 'base64'.",
                "encoding_format",
            )
        dim = body.get("dimensions")
        if dim is None:
            dim = self.config.embedding_dim
        elif isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= 8192:
            raise _bad("Invalid 'dimensions': expected an integer within 1..8192.", "dimensions")

        data = []
        total_tokens = 0
        for index, (key, tokens) in enumerate(items):
            total_tokens += tokens
            vector = embedding_vector(key, dim)
            encoded: list[float] | str
            if encoding == "base64":
                encoded = base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode("ascii")
            else:
                encoded = vector
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        return json_response(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": total_tokens, "total_tokens": total_tokens},
            }
        )

    @staticmethod
    def _embedding_inputs(value: object) -> list[tuple[str, int]]:
        """Normalise ``input`` to ``(hash key, token count)`` pairs."""

        def is_tokens(v: object) -> bool:
            return (
                isinstance(v, list)
                and bool(v)
                and all(isinstance(t, int) and not isinstance(t, bool) for t in v)
            )

        def from_tokens(v: list[int]) -> tuple[str, int]:
            return "tokens:" + ",".join(map(str, v)), len(v)

        invalid = _bad(
            "'$.input' is invalid. Expected a non-empty string, array of strings, "
            "array of integers or array of integer arrays.",
            "input",
        )
        if isinstance(value, str):
            if not value:
                raise invalid
            return [(value, count_tokens(value))]
        if is_tokens(value):
            return [from_tokens(value)]  # type: ignore[arg-type]
        if not isinstance(value, list) or not value:
            raise invalid
        items: list[tuple[str, int]] = []
        for entry in value:
            if isinstance(entry, str) and entry:
                items.append((entry, count_tokens(entry)))
            elif is_tokens(entry):
                items.append(from_tokens(entry))  # type: ignore[arg-type]
            else:
                raise invalid
        return items

    # ---- models --------------------------------------------------------------

    @staticmethod
    def _model_object(model_id: str) -> dict[str, Any]:
        return {
            "id": model_id,
            "object": "model",
            "created": MODELS_CREATED,
            "owned_by": "xrouter-emulator",
        }

    def list_models(self, request: Request) -> Response:
        """Handle ``GET /v1/models``."""
        self._authenticate(request)
        return json_response({"object": "list", "data": [self._model_object(m) for m in MODELS]})

    def retrieve_model(self, request: Request, model_id: str) -> Response:
        """Handle ``GET /v1/models/{id}``; unknown ids get OpenAI's 404."""
        self._authenticate(request)
        if model_id not in MODELS:
            raise HTTPError(
                404,
                f"The model '{model_id}' does not exist",
                param="model",
                code="model_not_found",
                error_type="invalid_request_error",
            )
        return json_response(self._model_object(model_id))


def _first_words(text: str, limit: int = ECHO_WORDS) -> str:
    words = text.split()
    return " ".join(words[:limit]) if words else "(empty)"


def _fake_value(name: str, schema: object, place: str) -> object:
    """Produce a deterministic argument value for one JSON-schema property."""
    if not isinstance(schema, dict):
        return None
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "string":
        lowered = name.lower()
        return place if any(k in lowered for k in ("location", "city", "place")) else "mock"
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return {}
    return None


def embedding_vector(text: str, dim: int) -> list[float]:
    """Return a deterministic unit vector for ``text``, rounded to float32."""
    raw = bytearray()
    counter = 0
    seed = text.encode("utf-8")
    while len(raw) < dim * 4:
        raw += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    values = [
        (int.from_bytes(raw[i * 4 : i * 4 + 4], "big") / 0xFFFFFFFF) * 2.0 - 1.0 for i in range(dim)
    ]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    # Round-trip through float32 so JSON floats equal the decoded base64 form.
    packed = struct.pack(f"<{dim}f", *(v / norm for v in values))
    return list(struct.unpack(f"<{dim}f", packed))


EMULATOR = OpenAIEmulator
