"""The GigaChat adapter: chat (plain and SSE), models, embeddings, token count.

Talks to the classic v1 API (``https://gigachat.devices.sberbank.ru/api/v1``
or ``https://api.giga.chat/v1``; the catalog's ``base_url``) with a bearer
token from :mod:`providers.gigachat.auth`. The translation rules live in
:mod:`providers.gigachat.mapping`.

Catalog ``options`` (all optional):

``scope``               ``GIGACHAT_API_PERS`` (default), ``_B2B`` or ``_CORP``.
``auth_url``            OAuth endpoint, default
                        ``https://ngw.devices.sberbank.ru:9443/api/v2/oauth``.
``ca_bundle``           path of a PEM bundle holding the Russian Trusted Root
                        CA (see ``deploy/certs/README.md``). TLS is always
                        verified; there is no switch to turn it off.
``token_refresh_margin_s``  refresh this long before expiry (default 60).
``auth_timeout_s``      read timeout of the OAuth call (default 10).
``client_id``           fixed ``X-Client-ID``; otherwise the request's
                        ``user`` is sent (hashed unless it is a short
                        ASCII id).
``response_format``     ``function`` (default) or ``native``; see mapping.
                        On ``contract: v2`` json_schema is always native.
``contract``            ``v1`` (default) or ``v2``.
``repetition_penalty``, ``update_interval``, ``profanity_check``, ``flags``,
``reasoning_effort``    defaults for the GigaChat fields of the same name.

Headers: ``X-Request-ID`` carries the gateway's request id (Sber's support
can find our request by it), ``X-Session-ID`` the conversation id from
``ChatRequest.extra["session_id"]`` (GigaChat ties prompt caching to it),
``X-Client-ID`` the end user as above.

Decisions where the spec is uncertain (the safest reading, written down):

* ``expires_at`` is read by magnitude (13 digits = ms, 10 digits = s), not
  trusted to be ms; see :func:`providers.gigachat.auth.expires_at_seconds`.
* Any non-200 answer is an error, as the official SDK treats it.
* 402 (listed on Sber's error page, body unknown) is "account out of
  quota": retryable elsewhere, 502 to the client (shared mapping).
* OAuth answering 400/401/403 means a wrong key or scope: not retryable,
  remembered for 10 s so workers do not hammer the OAuth host.
* 401 from the API: refresh the token once and retry once, whatever the
  message (``Unauthorized`` or ``Token has expired``); a second 401 fails.
* ``Retry-After`` on 429 is honoured when present (not observed on the
  real API); without it no hint is passed on.
* A stream that ends without ``data: [DONE]`` is a cut stream (retryable).
* A stream event without ``choices`` but with ``message`` is an in-band
  error (mid-stream failures are undocumented).
* ``options.contract: v2`` speaks ``/v2/chat/completions`` (see
  :mod:`providers.gigachat.v2`); ``v1`` stays the default until v2 is on
  every plan.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Iterator
from typing import Any, NoReturn

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
from providers.errors import ProviderError, bad_response, error_from_status, retry_after_seconds
from providers.gigachat import v2
from providers.gigachat.auth import TokenManager
from providers.gigachat.mapping import (
    PASSTHROUGH_FIELDS,
    ChatPlan,
    StopScanner,
    bad_request,
    chat_body,
    cut_at_stop,
    dumps,
    finish_reason,
    model_version,
    schema_content,
    tool_call_id,
    unfence_json,
    usage_from_gigachat,
    without_state_ids,
)
from providers.http import (
    HttpClient,
    UpstreamResponse,
    iter_sse_data,
    iter_sse_json,
    loads_event,
    parse_json,
    session_errors,
)
from providers.wire import TRANSPORT_ERRORS as WIRE_ERRORS
from xrouter_site.errors import ErrorCode

logger = logging.getLogger(__name__)

DEFAULT_AUTH_URL = "https://ngw.devices.sberbank.ru:9443/api/v2/oauth"
DEFAULT_SCOPE = "GIGACHAT_API_PERS"
SCOPES = frozenset({"GIGACHAT_API_PERS", "GIGACHAT_API_B2B", "GIGACHAT_API_CORP"})
_SAFE_HEADER_VALUE = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")


def header_value(value: str) -> str:
    """Return ``value`` if it is a safe header token, else its sha256 digest.

    Keeps arbitrary client text (spaces, Cyrillic, newlines) out of HTTP
    headers and does not hand a readable e-mail address to a third party.
    """
    if _SAFE_HEADER_VALUE.match(value) and "@" not in value:
        return value
    return hashlib.sha256(value.encode()).hexdigest()


class GigaChatProvider(Provider):
    """Adapter for Sber's GigaChat (see the module docstring for options)."""

    kind = "gigachat"
    # Stops are applied to the reply here; json_schema goes native or as a
    # function, but there is no JSON mode (response_format json_object), no
    # seed, no penalties and no parallel calls (one call per turn).
    supported_parameters = frozenset(
        {
            "temperature",
            "top_p",
            "max_tokens",
            "stop",
            "tools",
            "tool_choice",
            "structured_outputs",
            "reasoning",
        }
    )
    extra_params = frozenset(PASSTHROUGH_FIELDS)

    def __init__(self, config: ProviderConfig, http: HttpClient | None = None) -> None:
        options = config.options
        self.config_error = self._check_config(config)
        if self.config_error:
            # Build with system CAs so construction never fails; every call
            # then reports the misconfiguration instead of a TLS error.
            config = ProviderConfig(
                name=config.name,
                kind=config.kind,
                base_url=config.base_url,
                credential=config.credential,
                options={k: v for k, v in options.items() if k != "ca_bundle"},
                connect_timeout=config.connect_timeout,
                read_timeout=config.read_timeout,
                pool_size=config.pool_size,
            )
            logger.error(
                "GigaChat provider misconfigured",
                extra={"provider": config.name, "error": self.config_error},
            )
        super().__init__(config, http)
        self.tokens = TokenManager(
            provider=self.name,
            http=self.http,
            auth_url=str(options.get("auth_url") or DEFAULT_AUTH_URL),
            credential=config.credential,
            scope=str(options.get("scope") or DEFAULT_SCOPE),
            refresh_margin_s=float(options.get("token_refresh_margin_s", 60.0)),
            auth_timeout_s=float(options.get("auth_timeout_s", 10.0)),
        )

    @staticmethod
    def _check_config(config: ProviderConfig) -> str:
        options = config.options
        if not config.credential:
            return "no authorization key (set the env var named by api_key_env)"
        scope = options.get("scope") or DEFAULT_SCOPE
        if scope not in SCOPES:
            return f"unknown scope {scope!r}; use one of {', '.join(sorted(SCOPES))}"
        bundle = options.get("ca_bundle")
        if bundle is False:
            return "ca_bundle: false is refused; TLS verification cannot be turned off"
        if bundle is not None and not (isinstance(bundle, str) and os.path.isfile(bundle)):
            return f"ca_bundle {bundle!r} is not a readable file"
        if options.get("response_format", "function") not in ("function", "native"):
            return "options.response_format must be 'function' or 'native'"
        if options.get("contract", "v1") not in ("v1", "v2"):
            return "options.contract must be 'v1' or 'v2'"
        return ""

    # ---- plumbing ----------------------------------------------------------

    def _headers(
        self, request_id: str | None, extra: dict[str, Any] | None = None, user: str | None = None
    ) -> dict[str, str]:
        headers: dict[str, str] = {}
        if request_id:
            headers["X-Request-ID"] = header_value(request_id)
        session = (extra or {}).get("session_id")
        if isinstance(session, str) and session:
            headers["X-Session-ID"] = header_value(session)
        client_id = self.config.options.get("client_id") or user
        if isinstance(client_id, str) and client_id:
            headers["X-Client-ID"] = header_value(client_id)
        return headers

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: dict[str, str],
        stream: bool = False,
        url: str | None = None,
    ) -> UpstreamResponse:
        """Call the API with a token; on 401 refresh the token once and retry.

        ``url`` (absolute) overrides ``base_url + path``. Returns a 200
        response; raises ProviderError for anything else.
        """
        if self.config_error:
            raise ProviderError(
                f"{self.name} is misconfigured on the gateway",
                provider=self.name,
                retryable=True,
                status=502,
                code=ErrorCode.UPSTREAM_MISCONFIGURED,
            )
        if stream:
            headers = {**headers, "Accept": "text/event-stream", "Cache-Control": "no-store"}
        token = self.tokens.get()
        refreshed = False
        # Sber's docs say to echo functions_state_id in history, yet some
        # deployments answer 422 to it: then the request goes once more
        # without the ids (gpt2giga strips them always).
        fallback = without_state_ids(body) if isinstance(body, dict) else None
        while True:
            response = self.http.request(
                method,
                url or self.url(path),
                json=body,
                headers={**headers, "Authorization": f"Bearer {token}"},
                stream=stream,
            )
            if response.status_code == 401:
                response.close()
                self.tokens.invalidate(token)
                if not refreshed:
                    refreshed = True
                    logger.info(
                        "GigaChat token rejected, refreshing", extra={"provider": self.name}
                    )
                    token = self.tokens.get(rejected=token)
                    continue
            if response.status_code == 422 and fallback is not None:
                response.close()
                logger.info(
                    "GigaChat refused functions_state_id in history, retrying without it",
                    extra={"provider": self.name},
                )
                body, fallback = fallback, None
                continue
            if response.status_code == 200:
                return response
            try:
                self._raise_for_status(response)
            finally:
                response.close()

    def _raise_for_status(self, response: UpstreamResponse) -> None:
        message = ""
        try:
            data = orjson.loads(response.content)
            if isinstance(data, dict):
                message = str(data.get("message") or "")
        except session_errors(orjson.JSONDecodeError, *WIRE_ERRORS):
            message = ""
        raise error_from_status(
            self.name,
            response.status_code,
            message,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )

    def _bad_shape(self, what: str) -> ProviderError:
        return bad_response(
            self.name,
            f"{self.name} sent {what} in an unexpected shape",
        )

    # ---- chat ----------------------------------------------------------------

    @property
    def contract(self) -> str:
        """``v1`` (``/chat/completions`` under base_url) or ``v2`` (see :mod:`.v2`)."""
        return str(self.config.options.get("contract") or "v1")

    def chat(self, request: ChatRequest) -> ChatResponse:
        """Return a whole completion (see mapping for the translation)."""
        if self.contract == "v2":
            return self._chat_v2(request)
        body, plan = chat_body(self.name, request, self.config.options)
        body.pop("stream", None)
        response = self._send(
            "POST",
            "/chat/completions",
            body=body,
            headers=self._headers(request.request_id, request.extra, request.user),
        )
        data = parse_json(response, provider=self.name)
        try:
            choices = [self._choice(raw, plan) for raw in data["choices"]]
            served = str(data.get("model") or request.model)
            return ChatResponse(
                id="",
                model=served,
                choices=choices,
                usage=usage_from_gigachat(data.get("usage")),
                created=int(data.get("created") or time.time()),
                model_version=model_version(served),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self._bad_shape("a chat completion") from exc

    @staticmethod
    def _choice(raw: dict[str, Any], plan: ChatPlan) -> Choice:
        message = raw.get("message") or {}
        content: str | None = message.get("content")
        call = message.get("function_call")
        tool_calls: list[ToolCall] = []
        reason = finish_reason(raw.get("finish_reason"), has_call=bool(call))
        if call and plan.schema_function and call.get("name") == plan.schema_function:
            content = schema_content(plan, call.get("arguments"))
            reason = FinishReason.STOP
        elif call:
            call_id, name, arguments = _openai_call(call, message)
            tool_calls.append(ToolCall(id=call_id, name=name, arguments=arguments))
            # OpenAI clients expect null content next to tool calls.
            content = content or None
        elif content and plan.stops:
            content, stopped = cut_at_stop(content, plan.stops)
            if stopped:
                reason = FinishReason.STOP
        if content and plan.json_mode and not tool_calls:
            content = unfence_json(content)
        return Choice(
            index=int(raw.get("index", 0)),
            message=Message(
                role="assistant",
                content=content,
                tool_calls=tool_calls,
                reasoning_content=_reasoning(message),
            ),
            finish_reason=reason,
        )

    def stream(self, request: ChatRequest) -> ChatStream:
        """Start a streamed completion; the first chunk sets the model version."""
        if self.contract == "v2":
            return self._stream_v2(request)
        body, plan = chat_body(self.name, request, self.config.options)
        body["stream"] = True
        response = self._send(
            "POST",
            "/chat/completions",
            body=body,
            headers=self._headers(request.request_id, request.extra, request.user),
            stream=True,
        )
        stream = self._event_stream(response, request)
        stream._chunks = self._parse_stream(response, stream, plan)
        return stream

    def _event_stream(self, response: UpstreamResponse, request: ChatRequest) -> ChatStream:
        """Return the stream over ``response`` once it is an SSE body (v1 and v2)."""
        content_type = response.headers.get("Content-Type", "").split(";", 1)[0].strip()
        if content_type != "text/event-stream":
            response.close()
            raise self._bad_shape("a stream that is not text/event-stream")
        return ChatStream(
            iter(()), id="", model=request.model, created=int(time.time()), close=response.close
        )

    def _raise_stream_error(self, data: dict[str, Any]) -> NoReturn:
        """Raise the error event GigaChat sends in place of a chunk."""
        status = data.get("status")
        raise error_from_status(
            self.name,
            status if isinstance(status, int) and status >= 400 else 502,
            str(data.get("message") or ""),
        )

    def _parse_stream(
        self, response: UpstreamResponse, stream: ChatStream, plan: ChatPlan
    ) -> Iterator[ChatChunk]:
        scanner = StopScanner(plan.stops) if plan.stops else None
        finished = False
        for data in iter_sse_json(response, provider=self.name):
            if "choices" not in data and "message" in data:
                self._raise_stream_error(data)
            served = data.get("model")
            if stream.model_version is None and isinstance(served, str) and served:
                stream.model = served
                stream.model_version = model_version(served)
                stream.created = int(data.get("created") or stream.created)
            usage = usage_from_gigachat(data["usage"]) if data.get("usage") else None
            for choice in data.get("choices") or []:
                chunk = self._stream_chunk(choice, plan, scanner, finished)
                if chunk is None:
                    continue
                if chunk.finish_reason is not None:
                    finished = True
                    chunk.usage = usage
                    usage = None
                yield chunk
            if usage is not None:
                # Usage after an early stop (the stop sequence ended the
                # answer for the client; billing still needs the numbers).
                yield ChatChunk(usage=usage)

    @staticmethod
    def _stream_chunk(
        choice: dict[str, Any],
        plan: ChatPlan,
        scanner: StopScanner | None,
        finished: bool,
    ) -> ChatChunk | None:
        """Translate one GigaChat choice delta; None if nothing is left to send."""
        if finished:
            return None
        delta = choice.get("delta") or {}
        role = delta.get("role")
        if role == "function_in_progress":
            # Progress of a built-in function: nothing an OpenAI client knows.
            return None
        call = delta.get("function_call")
        reason = finish_reason(choice.get("finish_reason"), has_call=bool(call))
        content: str | None = delta.get("content")
        tool_calls: list[ToolCallDelta] = []
        if call and plan.schema_function and call.get("name") == plan.schema_function:
            content = schema_content(plan, call.get("arguments"))
            reason = FinishReason.STOP
        elif call:
            # GigaChat sends a call whole in one delta: one OpenAI delta
            # carries id, name and the full arguments string.
            call_id, name, arguments = _openai_call(call, delta)
            tool_calls.append(ToolCallDelta(index=0, id=call_id, name=name, arguments=arguments))
            content = None
        elif scanner is not None:
            content = scanner.feed(content or "")
            if scanner.stopped:
                reason = FinishReason.STOP
            elif reason is not None:
                content += scanner.flush()
        return ChatChunk(
            index=int(choice.get("index", 0)),
            role="assistant" if role else None,
            content=content,
            tool_calls=tool_calls,
            finish_reason=reason,
            reasoning_content=_reasoning(delta),
        )

    # ---- chat, v2 contract -------------------------------------------------------

    def _post_v2(self, request: ChatRequest, body: dict[str, Any], *, stream: bool) -> Any:
        return self._send(
            "POST",
            "/chat/completions",
            body=body,
            headers=self._headers(request.request_id, request.extra, request.user),
            stream=stream,
            url=v2.chat_url(self.config.base_url),
        )

    def _chat_v2(self, request: ChatRequest) -> ChatResponse:
        body, plan = v2.chat_body_v2(self.name, request, self.config.options)
        body.pop("stream", None)
        data = parse_json(self._post_v2(request, body, stream=False), provider=self.name)
        try:
            if not isinstance(data.get("messages"), list):
                raise ValueError("no messages")
            answer = v2.read_messages(data["messages"], plan)
            reason = v2.finish_reason_v2(
                data.get("finish_reason"), has_call=bool(answer.tool_calls)
            )
            content = answer.content
            if answer.tool_calls:
                content = content or None
            elif content and plan.stops:
                content, stopped = cut_at_stop(content, plan.stops)
                reason = FinishReason.STOP if stopped else reason
            if content and plan.json_mode and not answer.tool_calls:
                content = unfence_json(content)
            served = str(data.get("model") or request.model)
            return ChatResponse(
                id="",
                model=served,
                choices=[
                    Choice(
                        index=0,
                        message=Message(
                            role="assistant",
                            content=content,
                            tool_calls=answer.tool_calls,
                            reasoning_content=answer.reasoning,
                        ),
                        finish_reason=reason or FinishReason.STOP,
                    )
                ],
                usage=v2.usage_from_v2(data.get("usage")),
                created=int(data.get("created_at") or time.time()),
                model_version=model_version(served),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self._bad_shape("a v2 chat completion") from exc

    def _stream_v2(self, request: ChatRequest) -> ChatStream:
        body, plan = v2.chat_body_v2(self.name, request, self.config.options)
        body["stream"] = True
        response = self._post_v2(request, body, stream=True)
        stream = self._event_stream(response, request)
        stream._chunks = self._parse_stream_v2(response, stream, plan)
        return stream

    def _parse_stream_v2(
        self, response: UpstreamResponse, stream: ChatStream, plan: v2.PlanV2
    ) -> Iterator[ChatChunk]:
        """Named events, no ``[DONE]``: the event with ``finish_reason`` ends it."""
        scanner = StopScanner(plan.stops) if plan.stops else None
        role_sent = False
        calls_seen = 0
        stopped = False
        for payload in iter_sse_data(response, provider=self.name):
            data = loads_event(payload, provider=self.name)
            if not isinstance(data, dict):
                continue
            if "messages" not in data and "finish_reason" not in data and "message" in data:
                self._raise_stream_error(data)
            served = data.get("model")
            if stream.model_version is None and isinstance(served, str) and served:
                stream.model = served
                stream.model_version = model_version(served)
                stream.created = int(data.get("created_at") or stream.created)
            answer = v2.read_messages(data.get("messages"), plan, offset=calls_seen)
            if plan.single_call and calls_seen:
                answer.tool_calls = []
            calls_seen += len(answer.tool_calls)
            text = answer.content or ""
            if scanner is not None and not stopped:
                text = scanner.feed(text)
                stopped = scanner.stopped
            elif stopped:
                text = ""
            deltas = [
                ToolCallDelta(
                    index=call_index, id=call.id, name=call.name, arguments=call.arguments
                )
                for call_index, call in enumerate(
                    answer.tool_calls, start=calls_seen - len(answer.tool_calls)
                )
            ]
            raw_reason = data.get("finish_reason")
            if raw_reason:
                reason = (
                    FinishReason.STOP
                    if stopped
                    else v2.finish_reason_v2(raw_reason, has_call=calls_seen > 0)
                )
                if scanner is not None and not stopped:
                    text += scanner.flush()
                yield ChatChunk(
                    role=None if role_sent else "assistant",
                    content=text or (None if deltas else ""),
                    tool_calls=deltas,
                    finish_reason=reason,
                    reasoning_content=answer.reasoning,
                    usage=v2.usage_from_v2(data.get("usage")) if data.get("usage") else None,
                )
                return
            if text or deltas or answer.reasoning or not role_sent:
                yield ChatChunk(
                    role=None if role_sent else "assistant",
                    content=text if (text or not deltas) else None,
                    tool_calls=deltas,
                    reasoning_content=answer.reasoning,
                )
                role_sent = True
        raise ProviderError(
            f"the stream from {self.name} ended before it was complete",
            provider=self.name,
            retryable=True,
            status=502,
            code=ErrorCode.UPSTREAM_STREAM_CUT,
        )

    # ---- embeddings, models, tokens -------------------------------------------

    def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        """Return one vector per input; usage is the sum of the per-item counts."""
        if request.dimensions is not None:
            raise bad_request(
                self.name, "GigaChat embeddings have a fixed size; drop 'dimensions'.", "dimensions"
            )
        response = self._send(
            "POST",
            "/embeddings",
            body={"model": request.model, "input": request.inputs},
            headers=self._headers(request.request_id, request.extra, request.user),
        )
        data = parse_json(response, provider=self.name)
        try:
            items = sorted(data["data"], key=lambda item: int(item.get("index", 0)))
            vectors = [[float(x) for x in item["embedding"]] for item in items]
            prompt_tokens = sum(
                int((item.get("usage") or {}).get("prompt_tokens") or 0) for item in items
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self._bad_shape("embeddings") from exc
        return EmbeddingResponse(
            model=str(data.get("model") or request.model),
            vectors=vectors,
            usage=Usage(prompt_tokens=prompt_tokens),
        )

    def list_models(self) -> list[ModelInfo]:
        """Return GigaChat's model list (chat and embedder models alike)."""
        response = self._send("GET", "/models", headers={})
        data = parse_json(response, provider=self.name)
        try:
            return [
                ModelInfo(id=str(item["id"]), owned_by=str(item.get("owned_by") or self.name))
                for item in data["data"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise self._bad_shape("a model list") from exc

    def count_prompt_tokens(self, model: str, messages: list[Message]) -> int:
        """Count a prompt with ``/tokens/count``: one input per message, summed.

        GigaChat counts texts, not messages, so the role markup of a chat is
        not in the sum (Sber documents no count of it); tool calls count as
        their name and arguments.
        """
        texts = [_counted_text(m) for m in messages]
        return sum(self.count_tokens(model, [t for t in texts if t])) if any(texts) else 0

    def count_tokens(self, model: str, texts: list[str]) -> list[int]:
        """Return GigaChat's token count of each text for ``model``."""
        response = self._send(
            "POST", "/tokens/count", body={"model": model, "input": texts}, headers={}
        )
        data = parse_json(response, provider=self.name)
        try:
            counts = [int(item["tokens"]) for item in data]
        except (KeyError, TypeError, ValueError) as exc:
            raise self._bad_shape("token counts") from exc
        if len(counts) != len(texts):
            raise self._bad_shape("token counts")
        return counts


def _counted_text(message: Message) -> str:
    """Return what a message contributes to a token count."""
    parts = [message.text()]
    parts += [f"{call.name} {call.arguments}" for call in message.tool_calls]
    return " ".join(part for part in parts if part)


def _reasoning(message: dict[str, Any]) -> str | None:
    """Return v1's ``reasoning_content`` (the SDK's ``Messages`` field), if any."""
    value = message.get("reasoning_content")
    return value if isinstance(value, str) and value else None


def _openai_call(call: dict[str, Any], message: dict[str, Any]) -> tuple[str, str, str]:
    """Return (id, name, arguments string) of a v1 ``function_call`` (whole, plain or stream)."""
    arguments = call.get("arguments") or {}
    return (
        tool_call_id(call["name"], arguments, message.get("functions_state_id")),
        str(call["name"]),
        arguments if isinstance(arguments, str) else dumps(arguments),
    )
