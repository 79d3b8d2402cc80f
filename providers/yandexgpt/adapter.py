"""Adapter for YandexGPT (Yandex AI Studio) over its native REST API.

Wire facts this module copes with (``shared/specs/yandexgpt-api.md``):

* models are URIs ``gpt://<folder>/<model>/<branch>``; the catalog's
  ``upstream`` is ``<model>`` or ``<model>/<branch>`` (or a whole URI) and
  the folder comes from ``options.folder_id``;
* int64 fields travel as JSON strings (``"maxTokens": "500"``, usage);
* ``/completion`` answers ``{"result": {...}}``, also when streaming, where
  the body is newline-delimited JSON whose text is **cumulative**: deltas
  are computed on ``str`` (never bytes), so a chunk boundary inside a
  multi-byte character cannot corrupt the output;
* tool calls carry no id and take arguments as objects: ids are
  synthesised from (position, name, canonical arguments), so the same call
  gets the same id in a stream and a plain answer, and tool results are
  matched back to function names through the ids the client returns;
* errors are ``{"error": {grpcCode, httpCode, message, ...}}`` (or the
  google.rpc.Status ``{"code", "message"}`` on unary endpoints).

Options: ``folder_id`` (required), ``auth`` (``api_key`` | ``service_account``,
see :mod:`providers.yandexgpt.auth`), ``data_logging`` (default false: sends
``x-data-logging-enabled: false``), ``send_folder_header`` (default false),
``surface`` (``native`` | ``openai``: the OpenAI-compatible ``/v1`` surface
for models served only there, e.g. Qwen or gpt-oss).

Choices where the spec is uncertain:

* Stream framing: lines are split on ``\\n`` and ``\\r`` stripped; blank
  lines are skipped; a line may be ``{"result"}`` or ``{"error"}``. The
  stream must end with a non-PARTIAL status, otherwise it counts as cut.
* A chunk whose text does not extend the text already sent (the docs say
  earlier text may "in principle" be revised) cannot be un-sent to an
  OpenAI client: a shorter prefix is ignored, a divergent text ends the
  stream with ``upstream_bad_response`` rather than sending wrong deltas.
* ``CONTENT_FILTER``: its text *replaces* the answer (that is how
  Yandex's own SDK reads it). A plain answer is that text with
  ``finish_reason: content_filter``. In a stream, a replacement that does
  not extend what was already streamed cannot be un-sent: the stream ends
  normally with ``content_filter`` and the replacement as the chunk's
  ``refusal`` (OpenAI's field for a refusal an SDK can show).
* Unary endpoints' errors are read in both shapes.
* ``temperature`` above 1 (OpenAI allows 2) is clamped to Yandex's 1.0
  rather than refused; ``stop``, ``top_p``, ``seed`` and the penalties have
  no native equivalent and are dropped.
* No ``Retry-After`` is documented: one is honoured if present, otherwise
  429 is only flagged retryable and the router's backoff applies.
* The folder header is not sent by default: with service-account
  credentials a mismatching ``x-folder-id`` is an error, and the folder is
  in every model URI anyway.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson

from providers.base import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ChatStream,
    Choice,
    EmbeddingRequest,
    EmbeddingResponse,
    FinishReason,
    Message,
    ModelInfo,
    Provider,
    ProviderConfig,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from providers.errors import (
    ProviderError,
    bad_response,
    error_from_status,
    retry_after_seconds,
    sanitize_upstream_message,
)
from providers.http import (
    HttpClient,
    UpstreamResponse,
    iter_lines,
    loads_event,
    parse_json,
    session_errors,
)
from providers.openai_compat import OpenAICompatibleProvider
from providers.wire import TRANSPORT_ERRORS as WIRE_ERRORS
from providers.yandexgpt.auth import IamTokenSource
from xrouter_site.errors import ErrorCode

logger = logging.getLogger(__name__)

COMPLETION_PATH = "/foundationModels/v1/completion"
TOKENIZE_PATH = "/foundationModels/v1/tokenize"
TOKENIZE_COMPLETION_PATH = "/foundationModels/v1/tokenizeCompletion"
EMBEDDING_PATH = "/foundationModels/v1/textEmbedding"
# Upper bound for one NDJSON line; a peer that never sends a newline cannot
# make the gateway buffer without limit.
MAX_LINE_BYTES = 4 * 1024 * 1024
# Models the native API serves (spec §3.3); list_models() has no endpoint.
KNOWN_MODELS = ("yandexgpt", "yandexgpt-lite", "yandexgpt-32k", "llama", "llama-lite")
BRANCHES = ("latest", "rc", "deprecated")

_STATUS = {
    "ALTERNATIVE_STATUS_PARTIAL": None,
    "ALTERNATIVE_STATUS_UNSPECIFIED": None,
    "ALTERNATIVE_STATUS_FINAL": FinishReason.STOP,
    "ALTERNATIVE_STATUS_TRUNCATED_FINAL": FinishReason.LENGTH,
    "ALTERNATIVE_STATUS_CONTENT_FILTER": FinishReason.CONTENT_FILTER,
    "ALTERNATIVE_STATUS_TOOL_CALLS": FinishReason.TOOL_CALLS,
    # proto3 JSON may also send enums as their numbers.
    1: None,
    2: FinishReason.LENGTH,
    3: FinishReason.STOP,
    4: FinishReason.CONTENT_FILTER,
    5: FinishReason.TOOL_CALLS,
}
_FINAL_STATUSES = {k for k, v in _STATUS.items() if v is not None}
_CONTENT_FILTER_STATUSES = {k for k, v in _STATUS.items() if v is FinishReason.CONTENT_FILTER}
_FOLDER_ERROR = re.compile(r"folder", re.IGNORECASE)


def tool_call_id(index: int, name: str, arguments: Any) -> str:
    """Return a stable id for a native tool call, which has none.

    The id depends only on what the model asked for and where, so a retry
    or a stream produces the same id as a plain call.
    """
    canonical = orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256(f"{index}|{name}|".encode() + canonical).hexdigest()
    return "call_" + digest[:24]


def _int(value: Any) -> int:
    """Read a proto3-JSON int64 (a string, or a number from lenient peers)."""
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return int(float(value))


def usage_from_yandex(data: dict[str, Any] | None) -> Usage:
    """Convert Yandex's string-encoded usage into :class:`Usage`."""
    if not data:
        return Usage()
    details = data.get("completionTokensDetails") or {}
    return Usage(
        prompt_tokens=_int(data.get("inputTextTokens")),
        completion_tokens=_int(data.get("completionTokens")),
        reasoning_tokens=_int(details.get("reasoningTokens")) if isinstance(details, dict) else 0,
    )


def iter_json_lines(response: UpstreamResponse, *, provider: str) -> Iterator[bytes]:
    """Yield each non-blank line of a newline-delimited JSON body, as bytes.

    :func:`providers.http.iter_lines` does the reading, so multi-byte
    characters split across reads are whole again and a dropped connection
    is a retryable ProviderError.
    """
    for line in iter_lines(response, provider=provider, max_line=MAX_LINE_BYTES):
        line = line.strip()
        if line:
            yield line


class YandexGPTProvider(Provider):
    """YandexGPT adapter; ``surface: openai`` delegates to the /v1 surface."""

    kind = "yandexgpt"
    # The native API drops stop, top_p, seed and the penalties (above).
    supported_parameters = frozenset(
        {
            "temperature",
            "max_tokens",
            "tools",
            "tool_choice",
            "parallel_tool_calls",
            "response_format",
            "structured_outputs",
        }
    )
    extra_params = frozenset({"reasoning_mode"})

    def accepted_extra(self) -> frozenset[str]:
        """reasoningOptions exist on the native API only."""
        return self.extra_params if self._openai is None else self._openai.extra_params

    def __init__(self, config: ProviderConfig, http: HttpClient | None = None) -> None:
        """Check the options and set up authentication."""
        super().__init__(config, http)
        options = config.options
        self.folder_id = str(options.get("folder_id") or "").strip()
        if not self.folder_id:
            raise ValueError(f"provider {config.name}: options.folder_id is required")
        self.auth_mode = str(options.get("auth") or "api_key")
        if self.auth_mode not in ("api_key", "service_account"):
            raise ValueError(
                f"provider {config.name}: options.auth must be api_key or service_account"
            )
        self.iam: IamTokenSource | None = None
        if self.auth_mode == "service_account":
            self.iam = IamTokenSource(config, self.http)
        self.data_logging = bool(options.get("data_logging", False))
        self.send_folder_header = bool(options.get("send_folder_header", False))
        self.surface = str(options.get("surface") or "native")
        self._openai: _OpenAISurface | None = None
        if self.surface == "openai":
            self._openai = _OpenAISurface(self, config)
        elif self.surface != "native":
            raise ValueError(f"provider {config.name}: options.surface must be native or openai")

    # --- request plumbing ----------------------------------------------------

    def auth_header(self) -> str:
        """Return the ``Authorization`` value (fetching an IAM token if needed)."""
        if self.iam is not None:
            return f"Bearer {self.iam.token()}"
        # A trailing newline from a secret file would break the header.
        return f"Api-Key {self.config.credential.strip()}"

    def headers(self, request_id: str | None = None) -> dict[str, str]:
        """Return the headers every call sends."""
        headers = {
            "Authorization": self.auth_header(),
            "x-data-logging-enabled": "true" if self.data_logging else "false",
            "x-client-request-id": request_id or str(uuid.uuid4()),
        }
        if self.send_folder_header:
            headers["x-folder-id"] = self.folder_id
        return headers

    def model_uri(self, upstream: str, scheme: str = "gpt") -> str:
        """Return the URI for a catalog upstream name (branch defaults to latest)."""
        if "://" in upstream:
            return upstream
        name = upstream if "/" in upstream else f"{upstream}/latest"
        return f"{scheme}://{self.folder_id}/{name}"

    def _post(
        self, path: str, body: Any, request_id: str | None, *, stream: bool = False
    ) -> UpstreamResponse:
        """POST with auth; on a 401 with an IAM token, refresh it and retry once."""
        headers = self.headers(request_id)
        response = self.http.post_json(self.url(path), body, headers=headers, stream=stream)
        if response.status_code == 401 and self.iam is not None:
            response.close()
            self.iam.invalidate(headers["Authorization"].removeprefix("Bearer "))
            headers = self.headers(request_id)
            response = self.http.post_json(self.url(path), body, headers=headers, stream=stream)
        return response

    def error_from_body(
        self, status: int, content: bytes, retry_after: str | None = None
    ) -> ProviderError:
        """Map a Yandex error body (either shape) and HTTP status to ProviderError."""
        message = ""
        try:
            data = orjson.loads(content)
            if isinstance(data, dict):
                nested = data.get("error")
                error: dict[str, Any] = nested if isinstance(nested, dict) else data
                message = str(error.get("message") or "")
                status = _int(error.get("httpCode")) or status
        except (orjson.JSONDecodeError, TypeError, ValueError):
            message = ""
        if status in (400, 403) and _FOLDER_ERROR.search(message):
            # The client cannot fix the gateway's folder id: an operator error.
            return ProviderError(
                f"{self.name} rejected the gateway's folder configuration",
                provider=self.name,
                retryable=False,
                status=502,
                upstream_status=status,
                code=ErrorCode.UPSTREAM_MISCONFIGURED,
            )
        if status == 403:
            return ProviderError(
                f"{self.name} refused access: {sanitize_upstream_message(message)}",
                provider=self.name,
                retryable=False,
                status=502,
                upstream_status=status,
                code=ErrorCode.UPSTREAM_AUTH_FAILED,
            )
        return error_from_status(
            self.name, status, message, retry_after=retry_after_seconds(retry_after)
        )

    def _raise_for_status(self, response: UpstreamResponse) -> None:
        if response.status_code >= 400:
            try:
                content = response.content
            except session_errors(*WIRE_ERRORS):
                content = b""
            finally:
                response.close()
            raise self.error_from_body(
                response.status_code, content, response.headers.get("Retry-After")
            )

    def _stream_error(self, error: Any) -> ProviderError:
        """Map an ``{"error": ...}`` line that arrived after a 200."""
        error = error if isinstance(error, dict) else {}
        status = _int(error.get("httpCode")) or 502
        mapped = error_from_status(self.name, status, str(error.get("message") or ""))
        mapped.message = f"{self.name} ended the stream with an error: {mapped.message}"
        return mapped

    def _bad_shape(self, what: str) -> ProviderError:
        return bad_response(
            self.name,
            f"{self.name} sent {what} in an unexpected shape",
        )

    # --- chat ----------------------------------------------------------------

    def completion_body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """Build the native ``CompletionRequest`` for an OpenAI-style request."""
        if request.n != 1:
            raise ProviderError(
                f"{self.name} returns one choice per request; n must be 1",
                provider=self.name,
                retryable=False,
                status=400,
                code=ErrorCode.INVALID_REQUEST,
                param="n",
            )
        options: dict[str, Any] = {"stream": stream}
        if request.temperature is not None:
            options["temperature"] = min(max(request.temperature, 0.0), 1.0)
        if request.max_tokens is not None:
            options["maxTokens"] = str(request.max_tokens)
        reasoning = request.extra.get("reasoning_mode")
        if isinstance(reasoning, str):
            options["reasoningOptions"] = {"mode": reasoning}
        body: dict[str, Any] = {
            "modelUri": self.model_uri(request.model),
            "completionOptions": options,
            "messages": _messages_to_yandex(request.messages),
        }
        if request.tools:
            tools = []
            for tool in request.tools:
                function: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters}
                if tool.description is not None:
                    function["description"] = tool.description
                if tool.strict is not None:
                    function["strict"] = tool.strict
                tools.append({"function": function})
            body["tools"] = tools
        choice = request.tool_choice
        if isinstance(choice, str) and choice in ("auto", "none", "required"):
            body["toolChoice"] = {"mode": choice.upper()}
        elif isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            if name:
                body["toolChoice"] = {"functionName": name}
        if request.parallel_tool_calls is not None:
            body["parallelToolCalls"] = request.parallel_tool_calls
        fmt = request.response_format or {}
        if fmt.get("type") == "json_object":
            body["jsonObject"] = True
        elif fmt.get("type") == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema") or {}
            body["jsonSchema"] = {"schema": schema}
        return body

    def chat(self, request: ChatRequest) -> ChatResponse:
        """Return a whole completion from ``/completion``."""
        if self._openai is not None:
            return self._openai.chat(self._openai_request(request))
        response = self._post(
            COMPLETION_PATH, self.completion_body(request, stream=False), request.request_id
        )
        self._raise_for_status(response)
        data = parse_json(response, provider=self.name)
        if isinstance(data, dict) and "error" in data:
            raise self._stream_error(data["error"])
        try:
            result = data["result"]
            alternative = result["alternatives"][0]
            message, finish = _alternative(alternative)
            return ChatResponse(
                id="",
                model=request.model,
                choices=[Choice(index=0, message=message, finish_reason=finish)],
                usage=usage_from_yandex(result.get("usage")),
                created=int(time.time()),
                model_version=result.get("modelVersion") or None,
            )
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise self._bad_shape("a completion") from exc

    def stream(self, request: ChatRequest) -> ChatStream:
        """Start a cumulative native stream and turn it into OpenAI deltas."""
        if self._openai is not None:
            request.stream = True
            return self._openai.stream(self._openai_request(request))
        response = self._post(
            COMPLETION_PATH,
            self.completion_body(request, stream=True),
            request.request_id,
            stream=True,
        )
        self._raise_for_status(response)
        stream = ChatStream(
            iter(()),
            id="",
            model=request.model,
            created=int(time.time()),
            close=response.close,
        )
        chunks = self._parse_stream(response, stream)
        # Read the first line now, so model_version is known before the
        # gateway sends headers and an immediate error is still an HTTP error.
        try:
            first = next(chunks)
        except StopIteration:
            first = None
        except ProviderError:
            response.close()
            raise
        stream._chunks = _prepend(first, chunks)
        return stream

    def _parse_stream(self, response: UpstreamResponse, stream: ChatStream) -> Iterator[ChatChunk]:
        sent = ""
        role_sent = False
        finished = False
        usage: Usage | None = None
        for line in iter_json_lines(response, provider=self.name):
            data = loads_event(line, provider=self.name)
            if not isinstance(data, dict):
                continue
            if "error" in data:
                raise self._stream_error(data["error"])
            try:
                result = data["result"]
                alternative = result["alternatives"][0]
                status = alternative.get("status", "ALTERNATIVE_STATUS_PARTIAL")
                raw_message = alternative.get("message") or {}
                text = raw_message.get("text") or ""
            except (KeyError, IndexError, TypeError, AttributeError) as exc:
                raise self._bad_shape("a stream chunk") from exc
            if stream.model_version is None and result.get("modelVersion"):
                stream.model_version = str(result["modelVersion"])
            if result.get("usage"):
                usage = usage_from_yandex(result["usage"])
            refusal: str | None = None
            if text.startswith(sent):
                delta = text[len(sent) :]
            elif sent.startswith(text):
                delta = ""  # a shorter repeat: nothing new yet
            elif status in _CONTENT_FILTER_STATUSES:
                # The output filter fired after part of the answer went out:
                # its text replaces the answer (Yandex's SDK reads it so).
                # What was sent cannot be taken back; the stream ends as
                # content-filtered with the replacement as OpenAI's refusal.
                delta, refusal = "", text
            else:
                raise bad_response(
                    self.name,
                    f"{self.name} revised text it had already streamed",
                    retryable=False,
                )
            sent += delta
            finish = _STATUS.get(status) if status in _FINAL_STATUSES else None
            tool_deltas: list[ToolCallDelta] = []
            if finish is not None:
                for index, call in enumerate(_raw_tool_calls(raw_message)):
                    tool_deltas.append(
                        ToolCallDelta(
                            index=index, id=call.id, name=call.name, arguments=call.arguments
                        )
                    )
            if delta or tool_deltas or finish is not None or not role_sent:
                yield ChatChunk(
                    role=None if role_sent else "assistant",
                    content=delta if (delta or not tool_deltas) else None,
                    tool_calls=tool_deltas,
                    finish_reason=finish,
                    refusal=refusal,
                )
                role_sent = True
            if finish is not None:
                finished = True
                break
        if not finished:
            raise ProviderError(
                f"the stream from {self.name} ended before it was complete",
                provider=self.name,
                retryable=True,
                status=502,
                code=ErrorCode.UPSTREAM_STREAM_CUT,
            )
        if usage is not None:
            yield ChatChunk(usage=usage)

    # --- embeddings, tokens, models ---------------------------------------------

    def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        """Embed each input with one ``textEmbedding`` call (the API takes one)."""
        if self._openai is not None:
            request.model = self.model_uri(request.model, "emb")
            return self._openai.embed(request)
        uri = self.model_uri(request.model, "emb")
        vectors: list[list[float]] = []
        tokens = 0
        for text in request.inputs:
            body: dict[str, Any] = {"modelUri": uri, "text": text}
            if request.dimensions is not None:
                body["dim"] = str(request.dimensions)
            response = self._post(EMBEDDING_PATH, body, request.request_id)
            self._raise_for_status(response)
            data = parse_json(response, provider=self.name)
            try:
                vectors.append([float(x) for x in data["embedding"]])
                tokens += _int(data.get("numTokens"))
            except (KeyError, TypeError, ValueError) as exc:
                raise self._bad_shape("an embedding") from exc
        return EmbeddingResponse(
            model=request.model, vectors=vectors, usage=Usage(prompt_tokens=tokens)
        )

    def count_prompt_tokens(self, model: str, messages: list[Message]) -> int:
        """Count a chat prompt with ``tokenizeCompletion`` (native API only).

        Yandex renders the messages as the completion would, so the count
        includes its markup. The OpenAI surface has no counter.
        """
        if self._openai is not None:
            raise NotImplementedError("the OpenAI surface has no token counter")
        body = {"modelUri": self.model_uri(model), "messages": _messages_to_yandex(messages)}
        response = self._post(TOKENIZE_COMPLETION_PATH, body, None)
        self._raise_for_status(response)
        data = parse_json(response, provider=self.name)
        try:
            return len(data["tokens"])
        except (KeyError, TypeError) as exc:
            raise self._bad_shape("tokens") from exc

    def count_tokens(self, model: str, texts: list[str]) -> list[int]:
        """Count tokens with ``/tokenize`` (special tokens included)."""
        counts = []
        for text in texts:
            response = self._post(
                TOKENIZE_PATH, {"modelUri": self.model_uri(model), "text": text}, None
            )
            self._raise_for_status(response)
            data = parse_json(response, provider=self.name)
            try:
                counts.append(len(data["tokens"]))
            except (KeyError, TypeError) as exc:
                raise self._bad_shape("tokens") from exc
        return counts

    def list_models(self) -> list[ModelInfo]:
        """Return the native catalogue, one id per branch (no endpoint lists it)."""
        if self._openai is not None:
            return self._openai.list_models()
        return [
            ModelInfo(id=f"{model}/{branch}", owned_by="yandex")
            for model in KNOWN_MODELS
            for branch in BRANCHES
        ]

    def health_check(self) -> None:
        """Tokenize one word: authenticated, cheap and never billed as generation."""
        if self._openai is not None:
            self._openai.list_models()
            return
        self.count_tokens("yandexgpt-lite/latest", ["ping"])

    def _openai_request(self, request: ChatRequest) -> ChatRequest:
        request.model = self.model_uri(request.model)
        # Give the surface back the tool-call ids it issued (see _OpenAISurface).
        request.messages = [
            dataclasses.replace(
                message,
                tool_calls=[
                    dataclasses.replace(call, id=surface_call_id(call.id))
                    for call in message.tool_calls
                ],
                tool_call_id=surface_call_id(message.tool_call_id)
                if message.tool_call_id
                else None,
            )
            for message in request.messages
        ]
        return request


class _OpenAISurface(OpenAICompatibleProvider):
    """Yandex's OpenAI-compatible ``/v1`` with Yandex auth and folder.

    Shares the owner's connection pool and IAM token source; only the
    headers differ from a plain OpenAI upstream.
    """

    kind = "yandexgpt-openai"

    def __init__(self, owner: YandexGPTProvider, config: ProviderConfig) -> None:
        super().__init__(config, owner.http)
        self.owner = owner

    def _headers(self, request_id: str | None = None) -> dict[str, str]:
        headers = self.owner.headers(request_id)
        # The /v1 surface takes the folder as OpenAI's project header.
        headers["OpenAI-Project"] = self.owner.folder_id
        return headers

    def chat(self, request: ChatRequest) -> ChatResponse:
        """Chat, with unique tool-call ids and the model named without the folder."""
        response = super().chat(request)
        response.model = model_name(response.model)
        for choice in response.choices:
            for index, call in enumerate(choice.message.tool_calls):
                call.id = unique_call_id(index, call.id)
        return response

    def _chunks_of(self, data: dict[str, Any], stream: ChatStream) -> Iterator[ChatChunk]:
        # Parsed events only: a passed-through chunk carries neither the
        # model nor tool calls (providers/passthrough.py).
        for chunk in super()._chunks_of(data, stream):
            stream.model = model_name(stream.model)
            for delta in chunk.tool_calls:
                if delta.id:
                    delta.id = unique_call_id(delta.index, delta.id)
            yield chunk


#: Our wrapper around the surface's tool-call ids: ``ycid_<position>_<id>``.
_SURFACE_ID = re.compile(r"^ycid_\d+_(?P<id>.+)$", re.DOTALL)


def unique_call_id(index: int, surface_id: str) -> str:
    """Return a per-answer unique id for a surface tool call.

    YandexGPT-style answers on the OpenAI surface use the function name as
    the id, so one function called twice gives two equal ids, and OpenAI
    clients match results to calls by id. The position makes them unique;
    :func:`surface_call_id` restores what the surface expects back.
    """
    return f"ycid_{index}_{surface_id}"


def surface_call_id(call_id: str) -> str:
    """Undo :func:`unique_call_id` (other ids pass unchanged)."""
    match = _SURFACE_ID.match(call_id)
    return match.group("id") if match else call_id


def model_name(model: str) -> str:
    """``gpt://<folder>/qwen3-235b-a22b-fp8/latest`` -> ``qwen3-235b-a22b-fp8/latest``.

    The surface answers without the folder; requests carry the full URI.
    """
    if "://" not in model:
        return model
    _scheme, _, rest = model.partition("://")
    _folder, _, name = rest.partition("/")
    return name or model


def _prepend(first: ChatChunk | None, rest: Iterator[ChatChunk]) -> Iterator[ChatChunk]:
    if first is not None:
        yield first
    yield from rest


def _raw_tool_calls(raw_message: dict[str, Any]) -> list[ToolCall]:
    calls = []
    tool_list = raw_message.get("toolCallList") or {}
    for index, item in enumerate(tool_list.get("toolCalls") or []):
        function = item.get("functionCall") or {}
        name = str(function.get("name") or "")
        arguments = function.get("arguments")
        if arguments is None:
            arguments = {}
        calls.append(
            ToolCall(
                id=tool_call_id(index, name, arguments),
                name=name,
                arguments=orjson.dumps(arguments).decode()
                if not isinstance(arguments, str)
                else arguments,
            )
        )
    return calls


def _alternative(alternative: dict[str, Any]) -> tuple[Message, FinishReason | None]:
    raw_message = alternative.get("message") or {}
    calls = _raw_tool_calls(raw_message)
    status = alternative.get("status")
    finish = _STATUS.get(status) if status in _FINAL_STATUSES else FinishReason.STOP
    text = raw_message.get("text")
    return (
        Message(
            role="assistant",
            content=text if text is not None or not calls else None,
            tool_calls=calls,
        ),
        finish,
    )


def _messages_to_yandex(messages: list[Message]) -> list[dict[str, Any]]:
    """Translate OpenAI messages; consecutive tool results become one message."""
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.role
        if role == "tool":
            name = message.name or names.get(message.tool_call_id or "", "")
            result = {"functionResult": {"name": name, "content": message.text()}}
            previous = out[-1] if out else None
            if previous is not None and "toolResultList" in previous:
                previous["toolResultList"]["toolResults"].append(result)
            else:
                # The official SDK sends tool results with role "user".
                out.append({"role": "user", "toolResultList": {"toolResults": [result]}})
            continue
        if role == "assistant" and message.tool_calls:
            calls = []
            for call in message.tool_calls:
                names[call.id] = call.name
                try:
                    arguments = orjson.loads(call.arguments or "{}")
                except orjson.JSONDecodeError:
                    arguments = {}
                calls.append({"functionCall": {"name": call.name, "arguments": arguments}})
            out.append({"role": "assistant", "toolCallList": {"toolCalls": calls}})
            continue
        yandex_role = "system" if role in ("system", "developer") else role
        if yandex_role not in ("system", "user", "assistant"):
            yandex_role = "user"
        out.append({"role": yandex_role, "text": message.text()})
    return out
