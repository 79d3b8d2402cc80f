"""YandexGPT (Yandex AI Studio) emulator: native REST, IAM and the /v1 surface.

Speaks the wire format of ``shared/specs/yandexgpt-api.md`` closely enough
for the real adapter (and the ``openai`` SDK on ``/v1``):

* ``POST /foundationModels/v1/completion``: ``{"result": ...}`` bodies with
  int64 fields as strings; ``completionOptions.stream`` answers with
  newline-delimited JSON whose text is **cumulative**. With ``split_utf8``
  (default on) each line is cut into two HTTP chunks at a byte inside a
  multi-byte character, so clients must buffer bytes before decoding.
* ``completionAsync`` + ``GET /operations/{id}`` (done after ``async_polls``
  polls), ``tokenize``, ``tokenizeCompletion``, ``textEmbedding`` (256
  floats), ``POST /iam/v1/tokens`` (verifies the PS256 JWT signature with
  the public key from ``iam_public_key_file``), and the OpenAI-compatible
  ``/v1/chat/completions``, ``/v1/embeddings``, ``/v1/models`` (inherited
  from the OpenAI emulator, with Yandex's full-URI model names).
* Branches answer with their own ``modelVersion`` (``latest_version``,
  ``rc_version``, ``deprecated_version``).
* Errors: ``{"error": {grpcCode, httpCode, message, httpStatus, details}}``
  on ``/completion`` and for injected faults; google.rpc.Status
  ``{"code", "message", "details"}`` for the unary endpoints' own errors.

Deterministic replies (tests rely on them):

* Plain: ``"Ответ 🤖: Echo: " + <first 50 words of the last user text>``.
* Last message holds tool results: ``"Ответ 🤖: Tool result: " + contents``.
* Tools given, ``toolChoice`` not NONE and the last user text mentions
  "weather"/"погод" (or the choice is REQUIRED / a function name): one tool
  call, status ``TOOL_CALLS``, arguments filled from the schema (cities from
  "in <City>").
* Last user text contains "forbidden": status ``CONTENT_FILTER`` with a
  short refusal text. "censor": the filter fires late, as Yandex's output
  filter does: a stream sends the usual echo as PARTIAL lines, then a
  ``CONTENT_FILTER`` line whose text is the refusal (it replaces what was
  streamed rather than extending it); plain answers carry the refusal.
* The OpenAI surface's stream chunks leave ``finish_reason`` out until the
  finishing chunk, as Yandex does (``"finish_reason": null`` crashed
  ``yandex-ai-studio-sdk``). Its tool calls use the function name as the
  id, YandexGPT-style (one call per "in <City>", so two cities give two
  calls with the same id), and ``model`` comes back without the folder
  (``qwen3-235b-a22b-fp8/latest``).
* ``jsonSchema``: a JSON object filled from the schema; ``jsonObject``:
  ``{"answer": <echo text>}``.
* ``maxTokens`` keeps the first N words, status ``TRUNCATED_FINAL``.
* ``reasoningOptions.mode: ENABLED_HIDDEN`` reports one reasoning token per
  word of the last message (``completionTokensDetails.reasoningTokens``),
  counted in ``completionTokens``.
* Tokens are whitespace-separated words: input = sum over messages of
  ``1 + words``; completion = words of the reply.

Knobs (besides the common ones and the OpenAI emulator's): ``folder_id``
(URIs naming another folder get the folder-mismatch 400; empty = any),
``require_iam`` (refuse ``Api-Key``), ``iam_public_key_file``,
``iam_audience``, ``iam_token_ttl_s``, ``split_utf8``, ``async_polls``.
The framework's ``http_429`` fault answers with the concurrency-quota
message (grpcCode 8), ``http_503`` is UNAVAILABLE (14), ``http_504`` and
``timeout`` are DEADLINE_EXCEEDED (4), ``cut`` resets a stream mid-line.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from providers.emulators.base import (
    ConfigError,
    HTTPError,
    Request,
    Response,
    StreamResponse,
    json_response,
)
from providers.emulators.openai import (
    OpenAIConfig,
    OpenAIEmulator,
    _fake_value,
    _split_text,
    count_tokens,
    embedding_vector,
)
from providers.emulators.tokenizer import YANDEXGPT

__all__ = ["EMULATOR", "YandexGPTConfig", "YandexGPTEmulator", "reply_prefix"]

REPLY_PREFIX = "Ответ 🤖: "
IAM_AUDIENCE = "https://iam.api.cloud.yandex.net/iam/v1/tokens"
EMBEDDING_DIM = 256
CONTENT_FILTER_TEXT = "Я не могу обсуждать эту тему."
#: Internal key of a generated result: the text streamed before a late filter.
_DRAFT_KEY = "_draft"
_URI_RE = re.compile(
    r"^(?P<scheme>gpt|ds|emb)://(?P<folder>[^/]+)/(?P<model>[^/@]+)"
    r"(?:/(?P<branch>latest|rc|deprecated))?(?P<suffix>@[^/]+)?$"
)
_WEATHER_RE = re.compile(r"weather|погод", re.IGNORECASE)
_PLACE_RE = re.compile(r"\b(?:in|в)\s+([A-ZА-ЯЁ][\w-]*)")
_GRPC = {
    400: (3, "Bad Request"),
    401: (16, "Unauthorized"),
    403: (7, "Forbidden"),
    404: (5, "Not Found"),
    409: (10, "Conflict"),
    429: (8, "Too Many Requests"),
    500: (13, "Internal Server Error"),
    501: (12, "Not Implemented"),
    503: (14, "Service Unavailable"),
    504: (4, "Gateway Timeout"),
}


def reply_prefix() -> str:
    """Return the prefix of every plain reply (tests build expectations on it)."""
    return REPLY_PREFIX


@dataclass
class YandexGPTConfig(OpenAIConfig):
    """Knobs of the YandexGPT emulator on top of the OpenAI emulator's."""

    folder_id: str = field(
        default="b1gemulatorfolder",
        metadata={"help": "folder every model URI must name (empty: any)"},
    )
    latest_version: str = field(default="09.02.2025", metadata={"help": "latest modelVersion"})
    rc_version: str = field(default="21.07.2025", metadata={"help": "rc modelVersion"})
    deprecated_version: str = field(
        default="18.01.2024", metadata={"help": "deprecated modelVersion"}
    )
    require_iam: bool = field(
        default=False, metadata={"help": "accept only IAM tokens this emulator issued"}
    )
    iam_public_key_file: str = field(
        default="", metadata={"help": "authorized key JSON or PEM public key for JWT checks"}
    )
    iam_audience: str = field(default=IAM_AUDIENCE, metadata={"help": "expected JWT aud"})
    iam_token_ttl_s: int = field(default=43200, metadata={"help": "lifetime of IAM tokens"})
    split_utf8: bool = field(
        default=True, metadata={"help": "cut stream lines inside multi-byte characters"}
    )
    async_polls: int = field(
        default=1, metadata={"help": "operation polls answered 'not done' first"}
    )

    def validate(self) -> None:
        """Check the Yandex knobs after the inherited ones."""
        super().validate()
        if self.iam_token_ttl_s < 1:
            raise ConfigError("iam_token_ttl_s must be >= 1", "iam_token_ttl_s")
        if self.async_polls < 0:
            raise ConfigError("async_polls must be >= 0", "async_polls")


def _status_error(status: int, message: str) -> HTTPError:
    """Build an error for unary endpoints, marked for the Status shape."""
    return HTTPError(status, message, error_type="status")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _words(text: str, limit: int = 50) -> str:
    words = text.split()
    return " ".join(words[:limit]) if words else "(empty)"


class YandexGPTEmulator(OpenAIEmulator):
    """Emulates ``llm.api.cloud.yandex.net``, its operations and IAM hosts."""

    #: The surface's thinking models (Qwen3, DeepSeek, gpt-oss) send
    #: ``reasoning_content``; the SDK reads it (``_chat/completions/model.py``).
    shows_reasoning = True

    kind = "yandexgpt"
    config_class = YandexGPTConfig
    config: YandexGPTConfig
    omit_null_finish_reason = True
    call_per_place = True
    call_ids_are_names = True

    def served_model(self, model: str) -> str:
        """The OpenAI surface answers with the model URI's tail, without the folder."""
        match = _URI_RE.match(model)
        if match is None:
            return model
        return match.group("model") + (f"/{match.group('branch')}" if match.group("branch") else "")

    def __init__(self, config: YandexGPTConfig | None = None) -> None:
        """Start with no issued tokens and no pending operations."""
        self.issued_tokens: dict[str, float] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        super().__init__(config)

    def register_routes(self) -> None:
        """Mount the native, operation, IAM and OpenAI-compatible routes."""
        super().register_routes()
        self.route("POST", "/foundationModels/v1/completion", self.completion)
        self.route("POST", "/foundationModels/v1/completionAsync", self.completion_async)
        self.route("GET", "/operations/<operation_id>", self.operation)
        self.route("POST", "/foundationModels/v1/tokenize", self.tokenize)
        self.route("POST", "/foundationModels/v1/tokenizeCompletion", self.tokenize_completion)
        self.route("POST", "/foundationModels/v1/textEmbedding", self.text_embedding)
        self.route("POST", "/iam/v1/tokens", self.iam_tokens)

    def error_payload(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        error_type: str | None = None,
    ) -> object:
        """Return Yandex's error shape (Status shape for unary endpoints)."""
        grpc_code, http_status = _GRPC.get(status, (2 if status >= 500 else 3, "Error"))
        if status == 429 and message.startswith("emulated"):
            message = (
                "ai.textGenerationCompletionSessionsCount.count gauge quota limit exceed: "
                "allowed 10 requests"
            )
        if error_type == "status":
            return {
                "code": grpc_code,
                "message": message,
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.RequestInfo",
                        "requestId": str(uuid.uuid4()),
                    }
                ],
            }
        return {
            "error": {
                "grpcCode": grpc_code,
                "httpCode": status,
                "message": message,
                "httpStatus": http_status,
                "details": [],
            }
        }

    def malformed_body(self) -> bytes:
        """Return a cut-off ``{"result": ...}`` body for the malformed fault."""
        return b'{"result": {"alternatives": [{"message": {"role": "assistant", "text": "'

    # ---- auth ------------------------------------------------------------

    def _native_auth(self, request: Request, *, unary: bool = False) -> None:
        header = (request.headers.get("authorization") or "").strip()
        scheme, _, value = header.partition(" ")
        value = value.strip()
        make = _status_error if unary else (lambda s, m: HTTPError(s, m))
        if not value or scheme not in ("Api-Key", "Bearer"):
            raise make(401, "IAM token or API key has to be passed in request")
        if scheme == "Bearer":
            expiry = self.issued_tokens.get(value)
            if expiry is not None:
                if expiry < time.time():
                    raise make(401, "The token has expired")
                return
            if self.config.require_iam or self.config.iam_public_key_file:
                raise make(401, "The token is invalid")
            return
        if self.config.require_iam:
            raise make(401, "API keys are not accepted by this folder; use an IAM token")
        expected = self.config.api_key
        if expected and value != expected:
            raise make(401, f"Unknown api key '{value[:4]}****'")

    def _authenticate(self, request: Request) -> None:
        """Authenticate the /v1 surface: ``Bearer`` or ``Api-Key`` both work."""
        header = (request.headers.get("authorization") or "").strip()
        scheme, _, value = header.partition(" ")
        if scheme == "Api-Key" or (scheme == "Bearer" and value.strip()):
            if scheme == "Bearer" and value.strip() in self.issued_tokens:
                return
            if self.config.require_iam:
                raise HTTPError(401, "The token is invalid")
            expected = self.config.api_key
            if expected and value.strip() != expected:
                raise HTTPError(401, "Unknown api key")
            return
        raise HTTPError(401, "IAM token or API key has to be passed in request")

    def _model(self, body: dict[str, Any]) -> str:
        """Insist on a full model URI, as the /v1 surface does."""
        model = body.get("model")
        if not isinstance(model, str) or _URI_RE.match(model) is None:
            raise HTTPError(400, f"Failed to parse model URI: {model!r}")
        return model

    def _uri(self, value: object, schemes: tuple[str, ...], *, unary: bool) -> re.Match[str]:
        make = _status_error if unary else (lambda s, m: HTTPError(s, m))
        match = _URI_RE.match(value) if isinstance(value, str) else None
        if match is None or match.group("scheme") not in schemes:
            raise make(400, f"invalid model_uri: {value!r}")
        folder = self.config.folder_id
        if folder and match.group("folder") != folder:
            raise make(
                400,
                f"Specified folder ID '{match.group('folder')}' does not match with "
                f"service account folder ID '{folder}'",
            )
        return match

    def _version(self, match: re.Match[str]) -> str:
        branch = match.group("branch") or "latest"
        return str(getattr(self.config, f"{branch}_version"))

    # ---- completion --------------------------------------------------------

    def _completion(self, request: Request, *, unary: bool) -> tuple[dict[str, Any], bool]:
        """Validate a CompletionRequest; return (result payload, stream flag)."""
        self._native_auth(request, unary=unary)
        make = _status_error if unary else (lambda s, m: HTTPError(s, m))
        try:
            body = request.json_object()
        except ValueError as exc:
            raise make(400, f"invalid request body: {exc}") from None
        match = self._uri(body.get("modelUri", body.get("model_uri")), ("gpt", "ds"), unary=unary)
        options = body.get("completionOptions", body.get("completion_options")) or {}
        if not isinstance(options, dict):
            raise make(400, "completionOptions must be an object")
        temperature = options.get("temperature")
        if temperature is not None and (
            not isinstance(temperature, (int, float)) or not 0 <= temperature <= 1
        ):
            raise make(400, "temperature must be within [0, 1]")
        max_tokens = options.get("maxTokens", options.get("max_tokens"))
        if max_tokens is not None:
            try:
                max_tokens = int(max_tokens)
            except (TypeError, ValueError):
                raise make(400, "maxTokens must be an int64") from None
            if max_tokens < 1:
                raise make(400, "maxTokens must be > 0")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise make(400, "messages must be a non-empty list")
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in (
                "system",
                "user",
                "assistant",
            ):
                raise make(400, f"messages[{index}]: role must be system, user or assistant")
        result = self._generate(body, messages, max_tokens)
        reasoning = options.get("reasoningOptions") or {}
        if isinstance(reasoning, dict) and reasoning.get("mode") == "ENABLED_HIDDEN":
            # Hidden reasoning: one token per word of the last message,
            # counted inside completionTokens.
            thought = count_tokens(_native_text(messages[-1]))
            usage = result["usage"]
            usage["completionTokensDetails"] = {"reasoningTokens": str(thought)}
            usage["completionTokens"] = str(int(usage["completionTokens"]) + thought)
            usage["totalTokens"] = str(int(usage["totalTokens"]) + thought)
        result["modelVersion"] = self._version(match)
        return result, bool(options.get("stream"))

    @staticmethod
    def _draft(result: dict[str, Any]) -> str | None:
        """Take off the text a stream shows before a late content filter, if any."""
        draft: str | None = result.pop(_DRAFT_KEY, None)
        return draft

    def _generate(
        self, body: dict[str, Any], messages: list[dict[str, Any]], max_tokens: int | None
    ) -> dict[str, Any]:
        input_tokens = sum(1 + count_tokens(_native_text(m)) for m in messages)
        last = messages[-1]
        last_user = next(
            (
                _native_text(m)
                for m in reversed(messages)
                if m.get("role") == "user" and "text" in m
            ),
            "",
        )
        tools = body.get("tools") or []
        choice = body.get("toolChoice") or {}
        status = "ALTERNATIVE_STATUS_FINAL"
        message: dict[str, Any] = {"role": "assistant"}
        if "toolResultList" in last:
            results = last["toolResultList"].get("toolResults") or []
            contents = " ".join(
                str((r.get("functionResult") or {}).get("content", "")) for r in results
            )
            text = REPLY_PREFIX + "Tool result: " + _words(contents)
        elif (
            tools
            and choice.get("mode") != "NONE"
            and (
                choice.get("mode") == "REQUIRED"
                or "functionName" in choice
                or (last.get("role") == "user" and _WEATHER_RE.search(last_user))
            )
        ):
            call = self._native_tool_call(tools, choice, last_user)
            message["toolCallList"] = {"toolCalls": [{"functionCall": call}]}
            completion = count_tokens(call["name"]) + count_tokens(json.dumps(call["arguments"]))
            return self._result(message, "ALTERNATIVE_STATUS_TOOL_CALLS", input_tokens, completion)
        elif "forbidden" in last_user.lower():
            text = CONTENT_FILTER_TEXT
            status = "ALTERNATIVE_STATUS_CONTENT_FILTER"
        elif "censor" in last_user.lower():
            # The output filter fires after part of the answer was streamed:
            # the final status's text (the refusal) replaces the answer.
            message["text"] = CONTENT_FILTER_TEXT
            result = self._result(
                message,
                "ALTERNATIVE_STATUS_CONTENT_FILTER",
                input_tokens,
                count_tokens(CONTENT_FILTER_TEXT),
            )
            result[_DRAFT_KEY] = REPLY_PREFIX + "Echo: " + _words(last_user)
            return result
        elif isinstance(body.get("jsonSchema"), dict):
            schema = body["jsonSchema"].get("schema") or {}
            props = schema.get("properties") if isinstance(schema, dict) else None
            value = {
                name: _fake_value(name, spec, "Moscow") for name, spec in (props or {}).items()
            }
            text = json.dumps(value, ensure_ascii=False)
        elif body.get("jsonObject"):
            text = json.dumps({"answer": "Echo: " + _words(last_user)}, ensure_ascii=False)
        else:
            text = REPLY_PREFIX + "Echo: " + _words(last_user)
        if max_tokens is not None and count_tokens(text) > max_tokens:
            text = " ".join(text.split(" ")[:max_tokens])
            while count_tokens(text) > max_tokens:
                text = text.rsplit(" ", 1)[0]
            status = "ALTERNATIVE_STATUS_TRUNCATED_FINAL"
        message["text"] = text
        return self._result(message, status, input_tokens, count_tokens(text))

    @staticmethod
    def _result(
        message: dict[str, Any], status: str, input_tokens: int, completion_tokens: int
    ) -> dict[str, Any]:
        return {
            "alternatives": [{"message": message, "status": status}],
            "usage": {
                "inputTextTokens": str(input_tokens),
                "completionTokens": str(completion_tokens),
                "totalTokens": str(input_tokens + completion_tokens),
                "completionTokensDetails": {"reasoningTokens": "0"},
            },
        }

    @staticmethod
    def _native_tool_call(tools: list[Any], choice: dict[str, Any], text: str) -> dict[str, Any]:
        functions = [t.get("function") or {} for t in tools if isinstance(t, dict)]
        wanted = choice.get("functionName")
        chosen = next((f for f in functions if f.get("name") == wanted), None)
        if chosen is None:
            chosen = next(
                (f for f in functions if "weather" in str(f.get("name", "")).lower()),
                functions[0],
            )
        place_match = _PLACE_RE.search(text)
        place = place_match.group(1).rstrip("?.!,") if place_match else "Moscow"
        props = (chosen.get("parameters") or {}).get("properties") or {}
        arguments = {name: _fake_value(name, spec, place) for name, spec in props.items()}
        return {"name": chosen.get("name", ""), "arguments": arguments}

    def _headers(self, request: Request) -> list[tuple[str, str]]:
        headers = [
            ("x-request-id", str(uuid.uuid4())),
            ("x-server-trace-id", secrets.token_hex(8)),
            ("server", "ycalb"),
        ]
        client_id = request.headers.get("x-client-request-id")
        if client_id:
            headers.append(("x-client-request-id", client_id))
        return headers

    def completion(self, request: Request) -> Response | StreamResponse:
        """Handle ``POST /foundationModels/v1/completion`` (plain and stream)."""
        result, stream = self._completion(request, unary=False)
        draft = self._draft(result)
        headers = self._headers(request)
        if not stream:
            return json_response({"result": result}, headers=headers)
        return self._native_stream(result, headers, draft)

    def _native_stream(
        self, final: dict[str, Any], headers: list[tuple[str, str]], draft: str | None = None
    ) -> StreamResponse:
        alternative = final["alternatives"][0]
        # PARTIAL lines grow ``draft`` (when the filter fires late) or the
        # final text; the final line then says what the answer is.
        text = draft or alternative["message"].get("text")
        usage = final["usage"]
        lines: list[dict[str, Any]] = []
        if text:
            pieces = _split_text(text, self.config.stream_tokens)
            so_far = ""
            for piece in pieces[:-1]:
                so_far += piece
                partial_tokens = count_tokens(so_far)
                lines.append(
                    {
                        "alternatives": [
                            {
                                "message": {"role": "assistant", "text": so_far},
                                "status": "ALTERNATIVE_STATUS_PARTIAL",
                            }
                        ],
                        "usage": {
                            "inputTextTokens": usage["inputTextTokens"],
                            "completionTokens": str(partial_tokens),
                            "totalTokens": str(int(usage["inputTextTokens"]) + partial_tokens),
                        },
                        "modelVersion": final["modelVersion"],
                    }
                )
        lines.append(final)
        encoded = [orjson.dumps({"result": line}) + b"\n" for line in lines]
        frames: list[bytes] = []
        for line in encoded:
            cut = _inner_cut(line) if self.config.split_utf8 else None
            if cut is None:
                frames.append(line)
            else:
                frames += [line[:cut], line[cut:]]
        return StreamResponse(
            frames=frames,
            terminator=None,
            headers=headers,
            content_type="application/json",
            malformed_frame=b'{"result": {"alternatives": [{"message": \n',
        )

    # ---- async operations -------------------------------------------------

    def completion_async(self, request: Request) -> Response:
        """Handle ``completionAsync``: return an Operation, finish it on polls."""
        result, _stream = self._completion(request, unary=True)
        self._draft(result)
        op_id = "d7q" + secrets.token_hex(8)
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        operation = {
            "id": op_id,
            "description": "Async GPT Completion",
            "createdAt": now,
            "createdBy": "ajeemulatoruser",
            "modifiedAt": now,
            "done": False,
            "metadata": None,
        }
        self.operations[op_id] = {"op": operation, "polls": 0, "result": result}
        return json_response(operation, headers=self._headers(request))

    def operation(self, request: Request, operation_id: str) -> Response:
        """Handle ``GET /operations/{id}``."""
        self._native_auth(request, unary=True)
        entry = self.operations.get(operation_id)
        if entry is None:
            raise _status_error(404, "Operation not found")
        entry["polls"] += 1
        operation = dict(entry["op"])
        if entry["polls"] > self.config.async_polls:
            operation["done"] = True
            operation["response"] = {
                "@type": "type.googleapis.com/yandex.cloud.ai.foundation_models.v1."
                "CompletionResponse",
                **entry["result"],
            }
        return json_response(operation)

    # ---- tokenizer and embeddings ----------------------------------------------

    def _tokens(self, text: str) -> list[dict[str, Any]]:
        """Tokenise like YandexGPT's counter (a model of it, tokenizer.py)."""
        tokens: list[dict[str, Any]] = [{"id": "1", "text": "<s>", "special": True}]
        for piece in YANDEXGPT.pieces(text):
            shown = piece.replace(" ", "▁")
            count = YANDEXGPT.piece_tokens(piece)
            size = max(1, -(-len(shown) // count))
            for start in range(0, count * size, size):
                part = shown[start : start + size] or shown[-1:]
                token_id = int.from_bytes(part.encode()[:4].ljust(4, b"\0"), "big") % 120000 + 2
                tokens.append({"id": str(token_id), "text": part, "special": False})
        return tokens

    def tokenize(self, request: Request) -> Response:
        """Handle ``POST /foundationModels/v1/tokenize``."""
        self._native_auth(request, unary=True)
        body = request.json_object()
        match = self._uri(body.get("modelUri"), ("gpt", "ds"), unary=True)
        text = body.get("text")
        if not isinstance(text, str):
            raise _status_error(400, "text must be a string")
        return json_response(
            {"tokens": self._tokens(text), "modelVersion": self._version(match)},
            headers=self._headers(request),
        )

    def tokenize_completion(self, request: Request) -> Response:
        """Handle ``tokenizeCompletion``: tokens of the rendered prompt."""
        self._native_auth(request, unary=True)
        body = request.json_object()
        match = self._uri(body.get("modelUri"), ("gpt", "ds"), unary=True)
        messages = body.get("messages") or []
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise _status_error(400, "messages must be an array of objects")
        # Each message is rendered with its role; <s> starts the prompt once.
        tokens = self._tokens("")
        for message in messages:
            rendered = self._tokens(f"{message.get('role', 'user')}: {_native_text(message)}")
            tokens += rendered[1:]
        return json_response(
            {"tokens": tokens, "modelVersion": self._version(match)},
            headers=self._headers(request),
        )

    def text_embedding(self, request: Request) -> Response:
        """Handle ``POST /foundationModels/v1/textEmbedding`` (one text)."""
        self._native_auth(request, unary=True)
        body = request.json_object()
        match = self._uri(body.get("modelUri"), ("emb",), unary=True)
        text = body.get("text")
        if not isinstance(text, str) or not text:
            raise _status_error(400, "text must be a non-empty string")
        dim = int(body.get("dim") or EMBEDDING_DIM)
        # Doc and query models embed differently, as the real ones do.
        vector = embedding_vector(match.group("model") + "|" + text, dim)
        return json_response(
            {
                "embedding": vector,
                "numTokens": str(count_tokens(text)),
                "modelVersion": self._version(match),
            },
            headers=self._headers(request),
        )

    # ---- IAM -------------------------------------------------------------------

    def iam_tokens(self, request: Request) -> Response:
        """Exchange a PS256 JWT for an IAM token after verifying its signature."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        body = request.json_object()
        jwt = body.get("jwt")
        if not isinstance(jwt, str) or jwt.count(".") != 2 or len(jwt) > 8000:
            raise _status_error(400, "jwt must be a compact JWS")
        if not self.config.iam_public_key_file:
            raise _status_error(400, "the emulator has no iam_public_key_file")
        key_id, public_pem = _load_public_key(self.config.iam_public_key_file)
        head_b64, payload_b64, signature_b64 = jwt.split(".")
        try:
            header = json.loads(_b64url_decode(head_b64))
            payload = json.loads(_b64url_decode(payload_b64))
            signature = _b64url_decode(signature_b64)
        except ValueError:
            raise _status_error(400, "jwt is not valid base64url JSON") from None
        if header.get("alg") != "PS256":
            raise _status_error(400, "only PS256 is supported")
        if key_id and header.get("kid") != key_id:
            raise _status_error(401, f"unknown key id {header.get('kid')!r}")
        public_key = serialization.load_pem_public_key(public_pem.encode())
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise _status_error(400, "the configured key is not RSA")
        try:
            public_key.verify(
                signature,
                f"{head_b64}.{payload_b64}".encode("ascii"),
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                hashes.SHA256(),
            )
        except InvalidSignature:
            raise _status_error(401, "JWT signature verification failed") from None
        now = time.time()
        iat, exp = payload.get("iat"), payload.get("exp")
        if payload.get("aud") != self.config.iam_audience:
            raise _status_error(401, f"invalid audience {payload.get('aud')!r}")
        if not isinstance(iat, int) or not isinstance(exp, int) or exp - iat > 3600:
            raise _status_error(400, "iat/exp missing or the JWT lives more than an hour")
        if exp < now or iat > now + 300:
            raise _status_error(401, "the JWT is expired or not yet valid")
        token = "t1." + secrets.token_urlsafe(24) + "." + secrets.token_urlsafe(64)
        expires = now + self.config.iam_token_ttl_s
        self.issued_tokens[token] = expires
        expires_at = dt.datetime.fromtimestamp(expires, dt.UTC)
        return json_response(
            {
                "iamToken": token,
                # Nanosecond precision, as the real API answers.
                "expiresAt": expires_at.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z",
            }
        )


def _load_public_key(path: str) -> tuple[str, str]:
    """Return ``(key id or "", PEM public key)`` from a key JSON or PEM file."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    if text.lstrip().startswith("{"):
        data = json.loads(text)
        return str(data.get("id") or ""), str(data["public_key"])
    return "", text


def _native_text(message: dict[str, Any]) -> str:
    """Return the words a native message contributes to token counts."""
    if isinstance(message.get("text"), str):
        return str(message["text"])
    parts: list[str] = []
    for call in (message.get("toolCallList") or {}).get("toolCalls") or []:
        function = call.get("functionCall") or {}
        parts += [str(function.get("name", "")), json.dumps(function.get("arguments"))]
    for result in (message.get("toolResultList") or {}).get("toolResults") or []:
        parts.append(str((result.get("functionResult") or {}).get("content", "")))
    return " ".join(parts)


def _inner_cut(line: bytes) -> int | None:
    """Return a byte offset inside a multi-byte character near the middle, if any."""
    middle = len(line) // 2
    for offset in range(len(line)):
        for index in (middle + offset, middle - offset):
            if 0 < index < len(line) - 1 and 0x80 <= line[index] <= 0xBF:
                return index
    return None


EMULATOR = YandexGPTEmulator
