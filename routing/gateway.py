"""The OpenAI-compatible API under ``/v1/``: the gateway's hot path.

Plain Django views, dispatched by :class:`routing.middleware.GatewayMiddleware`
before sessions, CSRF and auth middleware run. A warm request touches no
database: the key comes from :mod:`keys.auth`, the route from
:mod:`routing.table`, limits are one Redis script (:mod:`routing.limits`),
and usage is handed to :mod:`routing.usage`, which writes it in batches.

A request goes: authenticate, validate, resolve the model(s), check limits,
try deployments until one serves (:mod:`routing.router`), answer, then
(:meth:`CallContext.finish`) settle limits with the real usage, record usage
and metrics, and write the access log line.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import logging
import math
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from keys import activity
from keys.auth import KeyPrincipal, authenticate_bearer
from providers.base import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ChatStream,
    EmbeddingRequest,
    EmbeddingResponse,
    Provider,
    ProviderError,
    Usage,
)
from routing import budgets, metrics, preferences, router, usage, validation
from routing.limits import Decision, LimitCode, limiter
from routing.table import ModelRoute, RoutingTable, get_table
from routing.versions import deprecation_headers, resolve_model_id, version_fields
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
    """What one request did: for limits, usage, metrics and the access log."""

    request_id: str
    method: str
    path: str
    started: float = field(default_factory=time.perf_counter)
    created: float = field(default_factory=time.time)
    endpoint: str = ""
    principal: KeyPrincipal | None = None
    requested_model: str | None = None
    model: str | None = None
    route: ModelRoute | None = None
    provider: str | None = None
    deployment_id: int | None = None
    model_version: str | None = None
    attempts: list[router.Attempt] = field(default_factory=list)
    upstream_ms: float | None = None
    first_token_ms: float | None = None
    usage: Usage | None = None
    cost: Decimal = Decimal(0)
    decision: Decision | None = None
    prompt_estimate: int = 0
    status: int = 200
    error_code: str | None = None
    stream: bool = False
    stream_complete: bool | None = None
    finished: bool = False
    # Called once when the call is over (the middleware's in-flight count).
    on_finish: Any = None
    # Renders errors in the surface's dialect (OpenAI's unless a surface
    # such as /v1/messages sets its own).
    render_error: Callable[[XRouterError], HttpResponse] = error_response

    def fail(self, error: XRouterError) -> HttpResponse:
        self.status = error.http_status
        self.error_code = str(error.code)
        return self.render_error(error)

    def finish(self) -> None:
        """Settle limits, record usage and metrics, write the log line; once."""
        if self.finished:
            return
        self.finished = True
        if self.on_finish is not None:
            self.on_finish()
        served = self.usage or Usage()
        if self.route is not None and self.usage is not None:
            self.cost = usage.cost_rub(self.route.prompt_price, self.route.completion_price, served)
        if self.decision is not None:
            limiter.settle(
                self.decision, tokens=served.total_tokens, cost=usage.to_micro(self.cost)
            )
        if (
            self.principal is not None
            and self.requested_model is not None
            and settings.XROUTER_USAGE_RECORDS_ENABLED
        ):
            self._record_usage(served)
        if self.status == 200 and self.deployment_id is not None and self.usage is not None:
            elapsed = time.perf_counter() - self.started
            preferences.observe(
                self.deployment_id,
                latency_ms=self.first_token_ms or self.upstream_ms or elapsed * 1000,
                completion_tokens=served.completion_tokens,
                seconds=elapsed,
            )
        self._metrics(served)
        self._log()

    def _record_usage(self, served: Usage) -> None:
        assert self.principal is not None and self.requested_model is not None
        usage.record(
            usage.UsageEvent(
                request_id=self.request_id,
                created=self.created,
                team_id=self.principal.team_id,
                key_id=self.principal.key_id,
                endpoint=self.endpoint,
                requested_model=self.requested_model,
                served_model=self.model or "",
                model_version=self.model_version or "",
                provider=self.provider or "",
                deployment_id=self.deployment_id,
                attempts=[a.as_dict() for a in self.attempts],
                prompt_tokens=served.prompt_tokens,
                completion_tokens=served.completion_tokens,
                cached_tokens=served.cached_tokens,
                cost_rub=str(self.cost),
                status=self.status,
                error_code=self.error_code or "",
                latency_ms=(time.perf_counter() - self.started) * 1000,
                ttft_ms=self.first_token_ms,
                stream=self.stream,
                stream_complete=self.stream_complete,
            )
        )

    def _metrics(self, served: Usage) -> None:
        if not self.endpoint or not settings.XROUTER_METRICS_ENABLED:
            return
        try:
            series = _series(self.endpoint, self.model or "-", self.provider or "-", self.status)
            series.requests.inc()
            series.latency.observe(time.perf_counter() - self.started)
            if self.first_token_ms is not None:
                series.ttft.observe(self.first_token_ms / 1000)
            if served.total_tokens:
                series.prompt_tokens.inc(served.prompt_tokens)
                series.completion_tokens.inc(served.completion_tokens)
            if self.cost:
                series.cost.inc(float(self.cost))
            if len(self.attempts) > 1 and self.attempts[-1].status == 200:
                series.fallbacks.inc()
        except Exception:
            logger.debug("metrics failed", exc_info=True)

    def _log(self) -> None:
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
            entry["cost_rub"] = str(self.cost)
        if len(self.attempts) > 1:
            entry["attempts"] = len(self.attempts)
        if self.error_code:
            entry["error_code"] = self.error_code
        if self.stream:
            entry["stream"] = True
            entry["stream_complete"] = self.stream_complete
            entry["ttft_ms"] = self.first_token_ms
        access_log.info("request", extra=entry)


@dataclass(frozen=True, slots=True)
class _Series:
    """The labelled metric children of one (endpoint, model, provider, status)."""

    requests: Any
    latency: Any
    ttft: Any
    prompt_tokens: Any
    completion_tokens: Any
    cost: Any
    fallbacks: Any


@functools.lru_cache(maxsize=4096)
def _series(endpoint: str, model: str, provider: str, status: int) -> _Series:
    """Resolve label children once per label set, not on every request.

    Labels are catalog ids, provider names and statuses only, so the set is
    small and bounded.
    """
    return _Series(
        requests=metrics.REQUESTS.labels(endpoint, model, provider, str(status)),
        latency=metrics.LATENCY.labels(endpoint, model, provider),
        ttft=metrics.TTFT.labels(model, provider),
        prompt_tokens=metrics.TOKENS.labels(model, provider, "prompt"),
        completion_tokens=metrics.TOKENS.labels(model, provider, "completion"),
        cost=metrics.COST.labels(model, provider),
        fallbacks=metrics.FALLBACKS.labels(model),
    )


# --- request plumbing -------------------------------------------------------


def authenticate(request: HttpRequest, ctx: CallContext, header: str | None = None) -> KeyPrincipal:
    """Resolve the caller from ``Authorization`` (or a surface's own ``header``)."""
    if header is None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
    principal = authenticate_bearer(header)
    ctx.principal = principal
    activity.touch(principal.key_id)
    return principal


def read_json(request: HttpRequest) -> Any:
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
        raise InvalidRequest(
            "The request body is empty; send a JSON object.", code=ErrorCode.INVALID_JSON
        )
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            f"The request body is not valid JSON: {exc.msg} (at character {exc.pos}).",
            code=ErrorCode.INVALID_JSON,
        ) from None


def _lookup(
    table: RoutingTable, model_id: str, principal: KeyPrincipal, kind: str, param: str = "model"
) -> ModelRoute:
    # A bare id of a versioned model means its ":latest" branch; the
    # resolved id is what keys are checked against and responses report.
    model_id = resolve_model_id(model_id, table.models)
    route = table.models.get(model_id)
    if route is None:
        raise ModelNotFound(
            f"The model '{model_id}' does not exist. GET /v1/models lists the available ones.",
            param=param,
            code=ErrorCode.MODEL_NOT_FOUND,
        )
    if not principal.allows_model(model_id):
        raise PermissionDenied(
            f"This API key is not allowed to use the model '{model_id}'.",
            param=param,
            code=ErrorCode.MODEL_NOT_ALLOWED,
        )
    if route.type != kind:
        raise InvalidRequest(
            f"The model '{model_id}' is a {route.type} model and cannot serve this endpoint.",
            param=param,
            code=ErrorCode.UNSUPPORTED_OPERATION,
        )
    return route


def _routes(
    table: RoutingTable, model_id: str, extra: list[str], principal: KeyPrincipal, kind: str
) -> list[ModelRoute]:
    """Return the requested model, then the request's and the catalog's fallbacks."""
    primary = _lookup(table, model_id, principal, kind)
    routes = [primary]
    for i, other in enumerate(extra):
        route = _lookup(table, other, principal, kind, param=f"models[{i}]")
        if route not in routes:
            routes.append(route)
    for other in primary.fallbacks:
        fallback = table.models.get(other)
        # Catalog fallbacks the key may not use are skipped, not errors.
        if (
            fallback is not None
            and fallback.type == kind
            and fallback not in routes
            and principal.allows_model(fallback.model_id)
        ):
            routes.append(fallback)
    return routes


def _options(
    table: RoutingTable,
    routes: list[ModelRoute],
    prefs: preferences.Preferences = preferences.DEFAULT,
    request: ChatRequest | None = None,
) -> list[router.Candidate]:
    options = router.candidates(table, routes)
    if options and request is not None:
        options = preferences.apply(options, prefs, table, request)
    if not options:
        reasons = (
            "; ".join(
                f"{d.provider}: {table.providers[d.provider].unavailable}"
                for route in routes
                for d in route.deployments
            )
            or "no deployment is configured"
        )
        logger.error(
            "model has no usable deployment",
            extra={"model": routes[0].model_id, "reasons": reasons},
        )
        raise ServiceUnavailable(f"The model '{routes[0].model_id}' is not available right now.")
    return options


def _estimate_prompt_tokens(texts: list[str]) -> int:
    """Estimate tokens before the call: a generous 1 token per 3 characters.

    Only the limiter's reservation uses this; the real count replaces it.
    """
    return sum(math.ceil(len(text) / 3) + 4 for text in texts)


def _admit(
    ctx: CallContext,
    principal: KeyPrincipal,
    route: ModelRoute,
    tokens: int,
    completion_tokens: int,
) -> None:
    estimated_cost = usage.cost_rub(
        route.prompt_price,
        route.completion_price,
        Usage(prompt_tokens=tokens, completion_tokens=completion_tokens),
    )
    plan = budgets.limit_plan(
        principal, route, tokens + completion_tokens, usage.to_micro(estimated_cost)
    )
    decision = limiter.acquire(plan)
    ctx.decision = decision if decision.allowed else None
    if decision.allowed:
        return
    failed = decision.failed
    assert failed is not None
    retry = max(1, math.ceil(decision.retry_after_ms / 1000))
    try:
        metrics.LIMIT_REFUSALS.labels(failed.code, failed.scope).inc()
    except Exception:
        logger.debug("metrics failed", exc_info=True)
    if failed.code == LimitCode.BUDGET:
        raise XRouterError(
            f"The {failed.scope} budget is spent for this period.",
            code=LimitCode.BUDGET,
            http_status=402,
            headers={"Retry-After": str(retry)},
        )
    what = {
        LimitCode.REQUESTS: f"{failed.limit} requests per minute",
        LimitCode.TOKENS: f"{failed.limit} tokens per minute",
        LimitCode.CONCURRENCY: f"{failed.limit} concurrent requests",
    }[failed.code]
    error = XRouterError(
        f"Rate limit reached: the {failed.scope} limit is {what}. Retry in {retry}s.",
        code=failed.code,
        http_status=429,
        headers={"Retry-After": str(retry), **_refusal_headers(failed)},
    )
    error.type = "rate_limit_error" if failed.code != LimitCode.CONCURRENCY else "rate_limit_error"
    raise error


def _refusal_headers(failed: Any) -> dict[str, str]:
    suffix = {"r": "requests", "t": "tokens"}.get(failed.kind)
    if suffix is None:
        return {}
    return {
        f"x-ratelimit-limit-{suffix}": str(failed.limit),
        f"x-ratelimit-remaining-{suffix}": "0",
    }


def _failure(ctx: CallContext, exc: router.AllAttemptsFailed) -> HttpResponse:
    return ctx.fail(_failure_error(ctx, exc))


def _failure_error(ctx: CallContext, exc: router.AllAttemptsFailed) -> XRouterError:
    """The client's error for a call whose every attempt failed."""
    ctx.attempts = exc.attempts
    last = exc.last
    logger.warning(
        "upstream call failed",
        extra={
            "request_id": ctx.request_id,
            "provider": last.provider,
            "upstream_status": last.upstream_status,
            "retryable": last.retryable,
            "code": last.code,
            "error": last.message,
            "attempts": len(exc.attempts),
        },
    )
    headers = {"x-xrouter-attempts": _chain(exc.attempts)} if exc.attempts else {}
    if last.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(last.retry_after)))
    tried = [a for a in exc.attempts if a.error_code != "breaker_open"]
    if len(tried) > 1:
        summary = "; ".join(
            f"{a.model} via {a.provider}: {a.status} {a.error_code}" for a in exc.attempts
        )
        error = XRouterError(
            f"Every upstream failed ({summary}).",
            code="all_upstreams_failed",
            http_status=503,
            headers=headers,
        )
    else:
        error = XRouterError(
            last.message, param=last.param, code=last.code, http_status=last.status, headers=headers
        )
        if last.status < 500 and last.status != 429:
            error.type = "invalid_request_error"
    return error


def _chain(attempts: list[router.Attempt]) -> str:
    return ", ".join(f"{a.provider}:{a.status}" for a in attempts)


def _served(ctx: CallContext, outcome: router.Outcome[Any]) -> None:
    ctx.attempts = outcome.attempts
    ctx.route = outcome.candidate.route
    ctx.model = outcome.candidate.route.model_id
    ctx.provider = outcome.candidate.deployment.provider
    ctx.deployment_id = outcome.candidate.deployment.deployment_id


def _served_headers(response: HttpResponseBase, ctx: CallContext) -> None:
    response["x-xrouter-provider"] = ctx.provider or ""
    response["x-xrouter-model"] = ctx.model or ""
    response["x-xrouter-attempts"] = _chain(ctx.attempts)
    if ctx.model_version:
        response["x-xrouter-model-version"] = ctx.model_version
    for name, value in deprecation_headers(ctx.route).items() if ctx.route else ():
        response[name] = value
    if ctx.decision is not None:
        for name, value in ctx.decision.headers().items():
            response[name] = value


def _deadline() -> float:
    return time.monotonic() + settings.XROUTER_REQUEST_DEADLINE_SECONDS


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


def sse_event(name: str, payload: dict[str, Any]) -> bytes:
    """A named SSE event (``event:`` line), as Anthropic and Responses streams use."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def _is_usage_only(chunk: ChatChunk) -> bool:
    return (
        chunk.usage is not None
        and chunk.content is None
        and not chunk.tool_calls
        and chunk.finish_reason is None
        and chunk.role is None
    )


class StreamEncoder(Protocol):
    """Turns the internal chunk stream into one surface's wire events."""

    def start(self) -> bytes:
        """Bytes sent before the first chunk (may be empty)."""

    def chunk(self, chunk: ChatChunk) -> bytes:
        """Bytes for one upstream chunk (may be empty)."""

    def end(self, usage: Usage) -> bytes:
        """Bytes that close a complete stream; ``usage`` is what is billed."""

    def error(self, exc: ProviderError) -> bytes:
        """The terminal error event of a stream cut after its first byte."""


class ChatEncoder:
    """``chat.completion.chunk`` events, then usage (if asked) and ``[DONE]``."""

    def __init__(self, stream: ChatStream, ctx: CallContext, include_usage: bool) -> None:
        self.base = {
            "id": stream.id or f"chatcmpl-{ctx.request_id}",
            "object": "chat.completion.chunk",
            "created": stream.created,
            "model": ctx.model,
        }
        self.include_usage = include_usage

    def start(self) -> bytes:
        return b""

    def chunk(self, chunk: ChatChunk) -> bytes:
        return _sse({**self.base, "choices": [_chunk_dict(chunk)]})

    def end(self, usage: Usage) -> bytes:
        if not self.include_usage:
            return SSE_DONE
        return _sse({**self.base, "choices": [], "usage": usage.as_openai()}) + SSE_DONE

    def error(self, exc: ProviderError) -> bytes:
        return openai_stream_error(exc)


def openai_stream_error(exc: ProviderError) -> bytes:
    """OpenAI's terminal stream error event."""
    return _sse(
        {"error": {"message": exc.message, "type": "api_error", "param": None, "code": exc.code}}
    )


def _relay(
    stream: ChatStream, first: ChatChunk | None, ctx: CallContext, encoder: StreamEncoder
) -> Iterator[bytes]:
    """Yield the client's bytes chunk by chunk as upstream sends them.

    Closing this generator (the client went away: the WSGI server calls
    ``close()`` on the response) closes the upstream response at once. The
    client is billed for what it received: on a cut or a disconnect the
    usage is what upstream reported, or an estimate of the text relayed.
    """
    reported: Usage | None = None
    relayed_chars = 0
    ctx.stream_complete = False
    renew_every = settings.XROUTER_LEASE_TTL_SECONDS / 3
    next_renewal = time.monotonic() + renew_every

    def pending() -> Iterator[ChatChunk]:
        if first is not None:
            yield first
        yield from stream

    def billed() -> Usage:
        if reported is not None:
            return reported
        # Upstream never sent its count (cut or client gone): bill the text
        # delivered so far, estimated like the reservation.
        return Usage(
            prompt_tokens=ctx.prompt_estimate,
            completion_tokens=math.ceil(relayed_chars / 3) if relayed_chars else 0,
        )

    try:
        opening = encoder.start()
        if opening:
            yield opening
        for chunk in pending():
            if chunk.usage is not None:
                reported = chunk.usage
                if _is_usage_only(chunk):
                    continue
            if chunk.content:
                relayed_chars += len(chunk.content)
            for call in chunk.tool_calls:
                relayed_chars += len(call.arguments)
            out = encoder.chunk(chunk)
            if out:
                yield out
            if ctx.decision is not None and time.monotonic() >= next_renewal:
                # A long stream keeps its concurrency slot.
                limiter.settle(ctx.decision, renew=True)
                next_renewal = time.monotonic() + renew_every
        yield encoder.end(billed())
        ctx.stream_complete = True
    except ProviderError as exc:
        # Bytes already reached the client: no switch to another provider,
        # only the surface's terminal error event.
        ctx.status = exc.status
        ctx.error_code = exc.code
        logger.warning(
            "upstream stream failed",
            extra={"request_id": ctx.request_id, "provider": exc.provider, "code": exc.code},
        )
        yield encoder.error(exc)
    finally:
        stream.close()
        ctx.usage = billed()
        ctx.finish()


class RelayResponse(StreamingHttpResponse):
    """A streamed response that cleans up even if it never started.

    The WSGI server calls ``close()`` when the client is gone. A relay
    generator that was already running closes the upstream and finishes the
    call in its own ``finally``; one the server never started cannot, so
    ``on_close`` does it (both steps are idempotent).
    """

    def __init__(self, *args: Any, on_close: tuple[Any, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_close = on_close

    def close(self) -> None:
        try:
            super().close()
        finally:
            for callback in self._on_close:
                callback()


def _attempt_request(
    request: ChatRequest, ctx: CallContext, candidate: router.Candidate
) -> ChatRequest:
    return dataclasses.replace(
        request, model=candidate.deployment.upstream, request_id=ctx.request_id
    )


def _chat_call(
    request: ChatRequest, ctx: CallContext
) -> Callable[[Provider, router.Candidate, float], ChatResponse]:
    def call(adapter: Provider, candidate: router.Candidate, remaining: float) -> ChatResponse:
        return adapter.chat(_attempt_request(request, ctx, candidate))

    return call


def _stream_call(
    request: ChatRequest, ctx: CallContext
) -> Callable[[Provider, router.Candidate, float], tuple[ChatStream, ChatChunk | None]]:
    def call(
        adapter: Provider, candidate: router.Candidate, remaining: float
    ) -> tuple[ChatStream, ChatChunk | None]:
        stream = adapter.stream(_attempt_request(request, ctx, candidate))
        # Wait for the first chunk before answering, so a failure before any
        # byte reaches the client is still a proper HTTP error and a chance
        # to fall back.
        try:
            return stream, next(stream)
        except StopIteration:
            return stream, None
        except BaseException:
            stream.close()
            raise

    return call


def _prepare_chat(
    ctx: CallContext, principal: KeyPrincipal, data: validation.ChatInput
) -> tuple[RoutingTable, list[router.Candidate]]:
    """Resolve routes and candidates, then admit the call against limits."""
    table = get_table()
    ctx.requested_model = data.model
    routes = _routes(table, data.model, data.fallback_models, principal, "chat")
    ctx.model, ctx.route = routes[0].model_id, routes[0]
    options = _options(table, routes, data.preferences, data.request)
    prompt_tokens = _estimate_prompt_tokens([m.text() for m in data.request.messages])
    ctx.prompt_estimate = prompt_tokens
    _admit(
        ctx,
        principal,
        routes[0],
        prompt_tokens,
        data.request.max_tokens or settings.XROUTER_DEFAULT_COMPLETION_ESTIMATE,
    )
    return table, options


def complete_chat(
    ctx: CallContext, principal: KeyPrincipal, data: validation.ChatInput
) -> ChatResponse:
    """Serve a whole completion on the hot path; raise the client's error."""
    table, options = _prepare_chat(ctx, principal, data)
    started = time.perf_counter()
    try:
        outcome = router.execute(
            options, _chat_call(data.request, ctx), table.adapter, deadline=_deadline()
        )
    except router.AllAttemptsFailed as exc:
        raise _failure_error(ctx, exc) from None
    finally:
        ctx.upstream_ms = round((time.perf_counter() - started) * 1000, 2)
    result = outcome.result
    _served(ctx, outcome)
    ctx.usage = result.usage
    ctx.model_version = result.model_version
    return result


def start_stream(
    ctx: CallContext, principal: KeyPrincipal, data: validation.ChatInput
) -> tuple[ChatStream, ChatChunk | None]:
    """Open a streamed completion up to its first chunk; raise the client's error."""
    table, options = _prepare_chat(ctx, principal, data)
    ctx.stream = True
    started = time.perf_counter()
    try:
        streamed = router.execute(
            options, _stream_call(data.request, ctx), table.adapter, deadline=_deadline()
        )
    except router.AllAttemptsFailed as exc:
        ctx.upstream_ms = round((time.perf_counter() - started) * 1000, 2)
        raise _failure_error(ctx, exc) from None
    stream, first = streamed.result
    _served(ctx, streamed)
    ctx.model_version = stream.model_version
    ctx.first_token_ms = ctx.upstream_ms = round((time.perf_counter() - started) * 1000, 2)
    return stream, first


def count_tokens(ctx: CallContext, principal: KeyPrincipal, data: validation.ChatInput) -> int:
    """Count the prompt's tokens with the model's own tokenizer where it has one.

    Routed like a call (preferences, breakers, fallback) and admitted as a
    request without tokens; upstreams without a counting endpoint get the
    limiter's estimate.
    """
    table = get_table()
    ctx.requested_model = data.model
    routes = _routes(table, data.model, data.fallback_models, principal, "chat")
    ctx.model, ctx.route = routes[0].model_id, routes[0]
    options = _options(table, routes, data.preferences, data.request)
    texts = [m.text() for m in data.request.messages if m.text()]
    texts += [
        tool.name + " " + orjson.dumps(tool.parameters).decode() for tool in data.request.tools
    ]
    estimate = _estimate_prompt_tokens(texts)
    _admit(ctx, principal, routes[0], 0, 0)

    def call(adapter: Provider, candidate: router.Candidate, remaining: float) -> int:
        try:
            return sum(adapter.count_tokens(candidate.deployment.upstream, texts)) if texts else 0
        except NotImplementedError:
            return estimate

    try:
        outcome = router.execute(options, call, table.adapter, deadline=_deadline())
    except router.AllAttemptsFailed as exc:
        raise _failure_error(ctx, exc) from None
    _served(ctx, outcome)
    ctx.usage = Usage()
    return outcome.result


def served_json(ctx: CallContext, body: dict[str, Any]) -> HttpResponse:
    """A served JSON answer with the routing and limit headers."""
    response = json_response(body)
    _served_headers(response, ctx)
    return response


def stream_response(
    ctx: CallContext, stream: ChatStream, first: ChatChunk | None, encoder: StreamEncoder
) -> RelayResponse:
    """The SSE response relaying ``stream`` through ``encoder``."""
    streaming = RelayResponse(
        _relay(stream, first, ctx, encoder),
        content_type="text/event-stream",
        on_close=(stream.close, ctx.finish),
    )
    streaming["Cache-Control"] = "no-cache"
    # Tell nginx-style proxies not to buffer the stream.
    streaming["X-Accel-Buffering"] = "no"
    _served_headers(streaming, ctx)
    return streaming


def chat_completions(request: HttpRequest, ctx: CallContext) -> HttpResponseBase:
    ctx.endpoint = "chat"
    principal = authenticate(request, ctx)
    data = validation.chat_input(read_json(request))
    if data.request.stream:
        stream, first = start_stream(ctx, principal, data)
        return stream_response(ctx, stream, first, ChatEncoder(stream, ctx, data.include_usage))
    result = complete_chat(ctx, principal, data)
    return served_json(
        ctx,
        {
            "id": result.id or f"chatcmpl-{ctx.request_id}",
            "object": "chat.completion",
            "created": result.created,
            "model": ctx.model,
            "choices": _message_dict(result),
            "usage": result.usage.as_openai(),
        },
    )


# --- embeddings ---------------------------------------------------------------


def _encode_vector(vector: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


def _embed_call(request: EmbeddingRequest, ctx: CallContext):  # type: ignore[no-untyped-def]
    def call(adapter: Provider, candidate: router.Candidate, remaining: float) -> EmbeddingResponse:
        attempt = dataclasses.replace(
            request, model=candidate.deployment.upstream, request_id=ctx.request_id
        )
        result = adapter.embed(attempt)
        if len(result.vectors) != len(attempt.inputs):
            raise ProviderError(
                f"{candidate.deployment.provider} returned {len(result.vectors)} vectors "
                f"for {len(attempt.inputs)} inputs",
                provider=candidate.deployment.provider,
                retryable=True,
                code="upstream_bad_response",
            )
        return result

    return call


def embeddings(request: HttpRequest, ctx: CallContext) -> HttpResponse:
    ctx.endpoint = "embeddings"
    principal = authenticate(request, ctx)
    data = validation.embedding_input(read_json(request))
    table = get_table()
    ctx.requested_model = data.model
    routes = _routes(table, data.model, [], principal, "embedding")
    ctx.model, ctx.route = routes[0].model_id, routes[0]
    options = _options(table, routes)
    _admit(ctx, principal, routes[0], _estimate_prompt_tokens(data.request.inputs), 0)
    started = time.perf_counter()
    try:
        outcome = router.execute(
            options, _embed_call(data.request, ctx), table.adapter, deadline=_deadline()
        )
    except router.AllAttemptsFailed as exc:
        return _failure(ctx, exc)
    finally:
        ctx.upstream_ms = round((time.perf_counter() - started) * 1000, 2)
    result = outcome.result
    _served(ctx, outcome)
    ctx.usage = result.usage
    body = {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": i,
                "embedding": _encode_vector(v, data.encoding_format),
            }
            for i, v in enumerate(result.vectors)
        ],
        "model": ctx.model,
        "usage": {
            "prompt_tokens": result.usage.prompt_tokens,
            "total_tokens": result.usage.total_tokens,
        },
    }
    response = json_response(body)
    _served_headers(response, ctx)
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
    out.update(version_fields(route))
    if route.context_length:
        out["context_length"] = route.context_length
    if route.prompt_price is not None or route.completion_price is not None:
        out["pricing"] = {
            "currency": "RUB",
            "unit": "1K tokens",
            "prompt": str(route.prompt_price) if route.prompt_price is not None else None,
            "completion": str(route.completion_price)
            if route.completion_price is not None
            else None,
        }
    return out


def list_models(request: HttpRequest, ctx: CallContext) -> HttpResponse:
    principal = authenticate(request, ctx)
    table = get_table()
    data = [
        _model_dict(route)
        for model_id, route in sorted(table.models.items())
        if principal.allows_model(model_id)
    ]
    return json_response({"object": "list", "data": data})


def retrieve_model(request: HttpRequest, ctx: CallContext, model_id: str) -> HttpResponse:
    principal = authenticate(request, ctx)
    route = get_table().models.get(model_id)
    if route is None or not principal.allows_model(model_id):
        raise ModelNotFound(
            f"The model '{model_id}' does not exist.", param="model", code=ErrorCode.MODEL_NOT_FOUND
        )
    return json_response(_model_dict(route))
