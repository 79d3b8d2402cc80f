"""The OpenAI-compatible API under ``/v1/``: the gateway's hot path.

Plain Django views, dispatched by :class:`routing.middleware.GatewayMiddleware`
before sessions, CSRF and auth middleware run. A warm request touches no
database: the key comes from :mod:`keys.auth`, the route from
:mod:`routing.table`, and the "last used" time is written in batches.
"""

from __future__ import annotations

import base64
import logging
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from keys import activity
from keys.auth import KeyPrincipal, authenticate_bearer
from providers.base import (
    ChatChunk,
    ChatResponse,
    ChatStream,
    Provider,
    ProviderError,
    Usage,
)
from routing import validation
from routing.table import DeploymentRoute, ModelRoute, get_table
from xrouter_site.errors import (
    ErrorCode,
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    RequestTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
    XRouterError,
    error_response,
    json_response,
)

access_log = logging.getLogger("xrouter.access")
logger = logging.getLogger(__name__)

SSE_DONE = b"data: [DONE]\n\n"


@dataclass(slots=True)
class CallContext:
    """What one request did, for the access log (and later, usage)."""

    request_id: str
    method: str
    path: str
    started: float = field(default_factory=time.perf_counter)
    principal: KeyPrincipal | None = None
    model: str | None = None
    provider: str | None = None
    upstream_ms: float | None = None
    first_token_ms: float | None = None
    usage: Usage | None = None
    status: int = 200
    error_code: str | None = None
    stream: bool = False
    stream_complete: bool | None = None
    logged: bool = False

    def fail(self, error: XRouterError) -> HttpResponse:
        self.status = error.http_status
        self.error_code = str(error.code)
        return error_response(error)

    def log(self) -> None:
        if self.logged:
            return
        self.logged = True
        principal = self.principal
        entry: dict[str, Any] = {
            "request_id": self.request_id,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "latency_ms": round((time.perf_counter() - self.started) * 1000, 2),
            "key_prefix": principal.prefix if principal else None,
            "team": principal.team_slug if principal else None,
            "model": self.model,
            "provider": self.provider,
            "upstream_ms": self.upstream_ms,
        }
        if self.usage is not None:
            entry["prompt_tokens"] = self.usage.prompt_tokens
            entry["completion_tokens"] = self.usage.completion_tokens
        if self.error_code:
            entry["error_code"] = self.error_code
        if self.stream:
            entry["stream"] = True
            entry["stream_complete"] = self.stream_complete
            entry["ttft_ms"] = self.first_token_ms
        access_log.info("request", extra=entry)


# --- request plumbing -------------------------------------------------------


def _authenticate(request: HttpRequest, ctx: CallContext) -> KeyPrincipal:
    principal = authenticate_bearer(request.META.get("HTTP_AUTHORIZATION", ""))
    ctx.principal = principal
    activity.touch(principal.key_id)
    return principal


def _read_json(request: HttpRequest) -> Any:
    content_type = request.META.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
    if content_type and content_type != "application/json":
        raise UnsupportedMediaType(
            f"Unsupported Content-Type {content_type!r}; send application/json."
        )
    limit = settings.XROUTER_MAX_BODY_BYTES
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise InvalidRequest("The Content-Length header is not a number.") from None
    if length > limit:
        raise RequestTooLarge(f"The request body is larger than {limit} bytes.")
    raw = request.read(limit + 1)
    if len(raw) > limit:
        raise RequestTooLarge(f"The request body is larger than {limit} bytes.")
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.",
                             code=ErrorCode.INVALID_JSON)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            f"The request body is not valid JSON: {exc.msg} (at character {exc.pos}).",
            code=ErrorCode.INVALID_JSON,
        ) from None


def _route(model_id: str, principal: KeyPrincipal, kind: str) -> tuple[ModelRoute, list[DeploymentRoute]]:
    table = get_table()
    route = table.models.get(model_id)
    if route is None:
        raise ModelNotFound(
            f"The model '{model_id}' does not exist. GET /v1/models lists the available ones.",
            param="model",
            code=ErrorCode.MODEL_NOT_FOUND,
        )
    if not principal.allows_model(model_id):
        raise PermissionDenied(
            f"This API key is not allowed to use the model '{model_id}'.",
            param="model",
            code=ErrorCode.MODEL_NOT_ALLOWED,
        )
    if route.type != kind:
        raise InvalidRequest(
            f"The model '{model_id}' is a {route.type} model and cannot serve this endpoint.",
            param="model",
            code=ErrorCode.UNSUPPORTED_OPERATION,
        )
    usable = [d for d in route.deployments if not table.providers[d.provider].unavailable]
    if not usable:
        reasons = "; ".join(
            f"{d.provider}: {table.providers[d.provider].unavailable}" for d in route.deployments
        ) or "no deployment is configured"
        logger.error("model has no usable deployment", extra={"model": model_id, "reasons": reasons})
        raise ServiceUnavailable(f"The model '{model_id}' is not available right now.")
    return route, usable


def _adapter(deployment: DeploymentRoute) -> Provider:
    return get_table().adapter(deployment.provider)


def _provider_error(ctx: CallContext, exc: ProviderError) -> HttpResponse:
    logger.warning(
        "upstream call failed",
        extra={
            "request_id": ctx.request_id,
            "provider": exc.provider,
            "upstream_status": exc.upstream_status,
            "retryable": exc.retryable,
            "code": exc.code,
            "error": exc.message,
        },
    )
    headers: dict[str, str] = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    error_type = "invalid_request_error" if exc.status < 500 and exc.status != 429 else "api_error"
    error = XRouterError(
        exc.message, param=exc.param, code=exc.code, http_status=exc.status, headers=headers
    )
    error.type = error_type
    return ctx.fail(error)


def _served_headers(response: HttpResponse, ctx: CallContext, version: str | None) -> None:
    response["x-xrouter-provider"] = ctx.provider or ""
    response["x-xrouter-model"] = ctx.model or ""
    if version:
        response["x-xrouter-model-version"] = version


# --- chat completions ---------------------------------------------------------


def _message_dict(response: ChatResponse) -> list[dict[str, Any]]:
    choices = []
    for choice in response.choices:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": choice.message.content,
            "refusal": None,
        }
        if choice.message.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in choice.message.tool_calls
            ]
        choices.append(
            {
                "index": choice.index,
                "message": message,
                "finish_reason": str(choice.finish_reason) if choice.finish_reason else None,
                "logprobs": None,
            }
        )
    return choices


def _chunk_dict(chunk: ChatChunk) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if chunk.role:
        delta["role"] = chunk.role
    if chunk.content is not None:
        delta["content"] = chunk.content
    if chunk.tool_calls:
        delta["tool_calls"] = [
            {
                "index": call.index,
                **({"id": call.id, "type": "function"} if call.id else {}),
                "function": {
                    **({"name": call.name} if call.name else {}),
                    "arguments": call.arguments,
                },
            }
            for call in chunk.tool_calls
        ]
    return {
        "index": chunk.index,
        "delta": delta,
        "finish_reason": str(chunk.finish_reason) if chunk.finish_reason else None,
        "logprobs": None,
    }


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _relay(
    stream: ChatStream,
    first: ChatChunk | None,
    ctx: CallContext,
    include_usage: bool,
) -> Iterator[bytes]:
    """Yield the client's SSE bytes chunk by chunk as upstream sends them.

    Closing this generator (the client went away: the WSGI server calls
    ``close()`` on the response) closes the upstream response at once.
    """
    base = {
        "id": stream.id or f"chatcmpl-{ctx.request_id}",
        "object": "chat.completion.chunk",
        "created": stream.created,
        "model": ctx.model,
    }
    usage: Usage | None = None
    ctx.stream_complete = False

    def encode(chunk: ChatChunk) -> bytes:
        return _sse({**base, "choices": [_chunk_dict(chunk)]})

    try:
        pending = [first] if first is not None else []
        for chunk in _chain(pending, stream):
            if chunk.usage is not None and chunk.content is None and not chunk.tool_calls \
                    and chunk.finish_reason is None and chunk.role is None:
                usage = chunk.usage
                continue
            if chunk.usage is not None:
                usage = chunk.usage
            yield encode(chunk)
        ctx.usage = usage
        if include_usage:
            yield _sse({**base, "choices": [], "usage": (usage or Usage()).as_openai()})
        yield SSE_DONE
        ctx.stream_complete = True
    except ProviderError as exc:
        # Bytes already reached the client: no switch to another provider,
        # only a terminal error event in OpenAI's stream error shape.
        ctx.status = exc.status
        ctx.error_code = exc.code
        ctx.usage = usage
        logger.warning(
            "upstream stream failed",
            extra={"request_id": ctx.request_id, "provider": exc.provider, "code": exc.code},
        )
        yield _sse(
            {"error": {"message": exc.message, "type": "api_error", "param": None, "code": exc.code}}
        )
    finally:
        stream.close()
        ctx.log()


def _chain(first: list[ChatChunk], rest: Iterator[ChatChunk]) -> Iterator[ChatChunk]:
    yield from first
    yield from rest


def chat_completions(request: HttpRequest, ctx: CallContext) -> HttpResponse:
    principal = _authenticate(request, ctx)
    data = validation.chat_input(_read_json(request))
    route, deployments = _route(data.model, principal, "chat")
    deployment = deployments[0]
    ctx.model = route.model_id
    ctx.provider = deployment.provider
    upstream_request = data.request
    upstream_request.model = deployment.upstream
    upstream_request.request_id = ctx.request_id
    adapter = _adapter(deployment)
    started = time.perf_counter()

    if not upstream_request.stream:
        try:
            result = adapter.chat(upstream_request)
        except ProviderError as exc:
            return _provider_error(ctx, exc)
        finally:
            ctx.upstream_ms = round((time.perf_counter() - started) * 1000, 2)
        ctx.usage = result.usage
        body = {
            "id": result.id or f"chatcmpl-{ctx.request_id}",
            "object": "chat.completion",
            "created": result.created,
            "model": route.model_id,
            "choices": _message_dict(result),
            "usage": result.usage.as_openai(),
        }
        response = json_response(body)
        _served_headers(response, ctx, result.model_version)
        return response

    ctx.stream = True
    try:
        stream = adapter.stream(upstream_request)
    except ProviderError as exc:
        ctx.upstream_ms = round((time.perf_counter() - started) * 1000, 2)
        return _provider_error(ctx, exc)
    # Wait for the first chunk before answering, so a failure before any
    # byte reaches the client is still a proper HTTP error (and, with
    # routing, a chance to fall back).
    try:
        first: ChatChunk | None = next(stream)
    except StopIteration:
        first = None
    except ProviderError as exc:
        stream.close()
        ctx.upstream_ms = round((time.perf_counter() - started) * 1000, 2)
        return _provider_error(ctx, exc)
    ctx.first_token_ms = ctx.upstream_ms = round((time.perf_counter() - started) * 1000, 2)
    response = StreamingHttpResponse(
        _relay(stream, first, ctx, data.include_usage), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    # Tell nginx-style proxies not to buffer the stream.
    response["X-Accel-Buffering"] = "no"
    _served_headers(response, ctx, stream.model_version)
    return response


# --- embeddings ---------------------------------------------------------------


def _encode_vector(vector: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


def embeddings(request: HttpRequest, ctx: CallContext) -> HttpResponse:
    principal = _authenticate(request, ctx)
    data = validation.embedding_input(_read_json(request))
    route, deployments = _route(data.model, principal, "embedding")
    deployment = deployments[0]
    ctx.model = route.model_id
    ctx.provider = deployment.provider
    upstream_request = data.request
    upstream_request.model = deployment.upstream
    upstream_request.request_id = ctx.request_id
    started = time.perf_counter()
    try:
        result = _adapter(deployment).embed(upstream_request)
    except ProviderError as exc:
        return _provider_error(ctx, exc)
    finally:
        ctx.upstream_ms = round((time.perf_counter() - started) * 1000, 2)
    if len(result.vectors) != len(upstream_request.inputs):
        return _provider_error(
            ctx,
            ProviderError(
                f"{deployment.provider} returned {len(result.vectors)} vectors "
                f"for {len(upstream_request.inputs)} inputs",
                provider=deployment.provider,
                retryable=True,
                code="upstream_bad_response",
            ),
        )
    ctx.usage = result.usage
    body = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _encode_vector(v, data.encoding_format)}
            for i, v in enumerate(result.vectors)
        ],
        "model": route.model_id,
        "usage": {
            "prompt_tokens": result.usage.prompt_tokens,
            "total_tokens": result.usage.total_tokens,
        },
    }
    response = json_response(body)
    _served_headers(response, ctx, None)
    return response


# --- models ------------------------------------------------------------------------


def _model_dict(route: ModelRoute) -> dict[str, Any]:
    owned_by = route.model_id.split("/", 1)[0] if "/" in route.model_id else "xrouter"
    out: dict[str, Any] = {
        "id": route.model_id,
        "object": "model",
        "created": route.created,
        "owned_by": owned_by,
        "type": route.type,
    }
    if route.display_name:
        out["name"] = route.display_name
    if route.context_length:
        out["context_length"] = route.context_length
    if route.prompt_price is not None or route.completion_price is not None:
        out["pricing"] = {
            "currency": "RUB",
            "unit": "1K tokens",
            "prompt": str(route.prompt_price) if route.prompt_price is not None else None,
            "completion": str(route.completion_price) if route.completion_price is not None else None,
        }
    return out


def list_models(request: HttpRequest, ctx: CallContext) -> HttpResponse:
    principal = _authenticate(request, ctx)
    table = get_table()
    data = [
        _model_dict(route)
        for model_id, route in sorted(table.models.items())
        if principal.allows_model(model_id)
    ]
    return json_response({"object": "list", "data": data})


def retrieve_model(request: HttpRequest, ctx: CallContext, model_id: str) -> HttpResponse:
    principal = _authenticate(request, ctx)
    route = get_table().models.get(model_id)
    if route is None or not principal.allows_model(model_id):
        raise ModelNotFound(
            f"The model '{model_id}' does not exist.", param="model", code=ErrorCode.MODEL_NOT_FOUND
        )
    return json_response(_model_dict(route))
