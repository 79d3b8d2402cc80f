"""The chat call on the hot path, shared by every API surface.

Each surface (``views.chat_completions``, ``surfaces.completions``,
``surfaces.messages``, ``surfaces.responses``) validates its own wire format
into a :class:`validation.ChatInput`, then calls :func:`complete_chat` or
:func:`start_stream` here: resolve the model(s), apply the PII guardrail,
the team's data policy and the request's routing preferences, admit the
call against limits, try deployments until one serves
(:mod:`routing.router`). Errors are raised as the client's
:class:`XRouterError`; the surface renders them in its own dialect
(``CallContext.render_error``). A client that hangs up while the upstream
works raises :class:`ClientDisconnected` (the middleware answers
:func:`client_gone`). The surface then renders the answer with
:func:`served_json` or :func:`stream_response` and its own stream encoder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import time
from typing import Any

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from keys.principal import KeyPrincipal
from providers.base import ChatChunk, ChatRequest, ChatResponse, ChatStream, Provider, Usage
from routing import pii, preferences, residency, router
from routing.gateway import validation
from routing.gateway.context import CallContext
from routing.gateway.disconnect import watch_client
from routing.gateway.relay import RelayResponse, StreamEncoder, relay
from routing.gateway.token_count import prompt_counter
from routing.limits.admission import PromptSize, admit, check_context, estimate_prompt_tokens
from routing.router import AttemptCall
from routing.table import ModelRoute, RoutingTable, get_table
from routing.versions import deprecation_headers, resolve_model_id
from xrouter_site.errors import (
    AllUpstreamsFailed,
    ErrorCode,
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    RequestTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
    XRouterError,
    json_response,
)

logger = logging.getLogger(__name__)

# --- request plumbing -------------------------------------------------------


def _read_chunked(request: HttpRequest, limit: int) -> bytes:
    """Read a chunked body (no Content-Length), at most ``limit + 1`` bytes.

    Django reads a body without Content-Length as empty. The server has
    already decoded the chunks; ``wsgi.input_terminated`` (gunicorn) says
    its stream ends with the body, so reading to EOF is safe. A server that
    does not promise that gets a clear 411 instead of a guess.
    """
    stream = request.META.get("wsgi.input")
    if stream is None or not request.META.get("wsgi.input_terminated"):
        raise XRouterError(
            "Send a Content-Length header: this server cannot read chunked bodies.",
            code=ErrorCode.INVALID_REQUEST,
            http_status=411,
        )
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        part = stream.read(min(65536, limit + 1 - size))
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def read_json(request: HttpRequest, ctx: CallContext) -> Any:
    """Return the request's JSON body, refused with a clear error when it is not one."""
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
    if (
        not request.META.get("CONTENT_LENGTH")
        and "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
    ):
        raw = _read_chunked(request, limit)
    else:
        raw = request.read(limit + 1)
    if len(raw) > limit:
        raise RequestTooLarge(f"The request body is larger than {limit} bytes.")
    ctx.body_bytes = len(raw)
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


# --- routing ------------------------------------------------------------------


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
            f"The model '{model_id}' is {'an' if route.type[:1] in 'aeiou' else 'a'} "
            f"{route.type} model and cannot serve this endpoint.",
            param=param,
            code=ErrorCode.UNSUPPORTED_OPERATION,
        )
    return route


def routes_for(
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


def candidates_for(
    table: RoutingTable,
    routes: list[ModelRoute],
    principal: KeyPrincipal,
    prefs: preferences.Preferences = preferences.DEFAULT,
    request: ChatRequest | None = None,
) -> list[router.Candidate]:
    """Return the deployments to try, in order.

    The team's data policy (tightened by ``provider.data_collection``) marks
    the deployments it forbids; the request's routing preferences then
    filter and reorder. When only forbidden ones are left the request is
    refused before anything is sent: never a silent downgrade.
    """
    policy = residency.residency_for(principal.data_policy, data_collection=prefs.data_collection)
    options = router.candidates(table, routes, policy)
    if options:
        options = preferences.apply(options, prefs, table, request)
    if options and all(option.refused for option in options):
        raise PermissionDenied(
            residency.violation_message(policy, routes[0].model_id),
            code=ErrorCode.DATA_POLICY_VIOLATION,
            headers={"x-xrouter-attempts": _chain([_skip(option) for option in options])},
        )
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


def failure_error(ctx: CallContext, exc: router.AllAttemptsFailed) -> XRouterError:
    """Return the client's error for a call whose every attempt failed."""
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
    tried = [a for a in exc.attempts if a.error_code != ErrorCode.BREAKER_OPEN and not a.skipped]
    if len(tried) > 1:
        summary = "; ".join(
            f"{a.model} via {a.provider}: {a.status} {a.error_code}" for a in exc.attempts
        )
        return AllUpstreamsFailed(f"Every upstream failed ({summary}).", headers=headers)
    error = XRouterError(
        last.message, param=last.param, code=last.code, http_status=last.status, headers=headers
    )
    if last.status < 500 and last.status != 429:
        error.type = "invalid_request_error"
    return error


def client_gone(ctx: CallContext) -> HttpResponse:
    """Record a request whose client hung up before any byte of the answer.

    The upstream call was abandoned (its connection closed); nothing reached
    the client, so nothing is billed. 499 is nginx's "client closed request".
    """
    ctx.status = 499
    ctx.error_code = str(ErrorCode.CLIENT_DISCONNECTED)
    logger.info(
        "client disconnected before the answer; upstream call stopped",
        extra={"request_id": ctx.request_id, "generation_id": ctx.generation_id},
    )
    return HttpResponse(status=499)


def _chain(attempts: list[router.Attempt]) -> str:
    return ", ".join(
        f"{a.provider}:skipped({a.skipped})" if a.skipped else f"{a.provider}:{a.status}"
        for a in attempts
    )


def _skip(option: router.Candidate) -> router.Attempt:
    return router.Attempt(
        option.route.model_id,
        option.deployment.provider,
        option.deployment.deployment_id,
        403,
        ErrorCode.DATA_POLICY,
        skipped=option.refused,
    )


def mark_served(ctx: CallContext, outcome: router.Outcome[Any]) -> None:
    ctx.attempts = outcome.attempts
    ctx.route = outcome.candidate.route
    ctx.model = outcome.candidate.route.model_id
    ctx.provider = outcome.candidate.deployment.provider
    ctx.deployment_id = outcome.candidate.deployment.deployment_id


def served_headers(response: HttpResponseBase, ctx: CallContext) -> None:
    if ctx.ignored_params:
        response["x-xrouter-ignored-params"] = ", ".join(ctx.ignored_params)
    response["x-xrouter-provider"] = ctx.provider or ""
    response["x-xrouter-model"] = ctx.model or ""
    response["x-xrouter-attempts"] = _chain(ctx.attempts)
    if ctx.model_version:
        response["x-xrouter-model-version"] = ctx.model_version
    if ctx.capped_max_tokens is not None:
        response["x-xrouter-max-tokens-capped"] = str(ctx.capped_max_tokens)
    for name, value in deprecation_headers(ctx.route).items() if ctx.route else ():
        response[name] = value
    if ctx.decision is not None:
        for name, value in ctx.decision.headers().items():
            response[name] = value


def deadline() -> float:
    return time.monotonic() + settings.XROUTER_REQUEST_DEADLINE_SECONDS


# --- chat ---------------------------------------------------------------------


#: Sane X-Session-ID values (GigaChat ties its prompt cache to the id).
_SESSION_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")


def session_id(request: HttpRequest, chat: ChatRequest) -> str | None:
    """Return the conversation id to send upstream (prompt caching), if any.

    The client's ``X-Session-ID`` wins; otherwise a request with ``user``
    gets ``user`` + a digest of the conversation's first message, stable for
    every turn of that conversation.
    """
    given = request.headers.get("X-Session-ID")
    if given is not None:
        if not _SESSION_ID.match(given):
            raise InvalidRequest(
                "Invalid value for 'X-Session-ID': use 1-128 letters, digits and ._:@-",
                param="X-Session-ID",
                code=ErrorCode.INVALID_VALUE,
            )
        return given
    if chat.user and chat.messages:
        digest = hashlib.sha256(chat.messages[0].text().encode()).hexdigest()[:16]
        return f"{chat.user}:{digest}"
    return None


def note_session(request: HttpRequest, data: validation.ChatInput) -> None:
    """Send the conversation id upstream (prompt caching), on every surface."""
    session = session_id(request, data.request)
    if session is not None:
        data.request.extra["session_id"] = session


def _note_ignored(ctx: CallContext, adapter: Provider, request: ChatRequest) -> None:
    accepted = adapter.accepted_extra() | {"session_id"}
    ctx.ignored_params = sorted(_PUBLIC_EXTRA.get(k, k) for k in request.extra if k not in accepted)


#: ChatRequest.extra keys whose request field has another name.
_PUBLIC_EXTRA = {"reasoning_mode": "reasoningOptions"}


def _attempt(request: ChatRequest, ctx: CallContext, candidate: router.Candidate) -> ChatRequest:
    return dataclasses.replace(
        request, model=candidate.deployment.upstream, request_id=ctx.request_id
    )


def _chat_call(
    request: ChatRequest, ctx: CallContext, guard: pii.ChatGuard | None
) -> AttemptCall[ChatResponse]:
    def call(adapter: Provider, candidate: router.Candidate, remaining: float) -> ChatResponse:
        attempt = _attempt(request, ctx, candidate)
        _note_ignored(ctx, adapter, attempt)
        result = adapter.chat(attempt)
        return guard.restore_response(result) if guard is not None else result

    return call


def _stream_call(
    request: ChatRequest, ctx: CallContext, guard: pii.ChatGuard | None
) -> AttemptCall[tuple[ChatStream, ChatChunk | None]]:
    def call(
        adapter: Provider, candidate: router.Candidate, remaining: float
    ) -> tuple[ChatStream, ChatChunk | None]:
        attempt = _attempt(request, ctx, candidate)
        _note_ignored(ctx, adapter, attempt)
        stream = adapter.stream(attempt)
        if guard is not None:
            # Placeholders the model echoes become the client's values again,
            # also when one is split across chunks.
            stream = guard.wrap_stream(stream)
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


def _guard_chat(ctx: CallContext, request: ChatRequest, mode: str) -> pii.ChatGuard | None:
    """Apply the PII mode; the counts go to the usage record and log either way."""
    try:
        guard = pii.guard_chat(request, mode)
    except pii.PiiDetected as exc:
        ctx.pii_counts = exc.counts
        raise
    if guard is not None:
        ctx.pii_counts = guard.counts
    return guard


@dataclasses.dataclass(slots=True)
class _Call:
    """A chat call ready to run: where it may go and what it sends."""

    table: RoutingTable
    routes: list[ModelRoute]
    options: list[router.Candidate]
    guard: pii.ChatGuard | None
    # What goes upstream: the client's request, redacted by the guard.
    outbound: ChatRequest


def _prepare(ctx: CallContext, principal: KeyPrincipal, data: validation.ChatInput) -> _Call:
    table = get_table()
    ctx.requested_model = data.model
    guard = _guard_chat(ctx, data.request, principal.pii_mode)
    routes = routes_for(table, data.model, data.fallback_models, principal, "chat")
    ctx.model, ctx.route = routes[0].model_id, routes[0]
    options = candidates_for(table, routes, principal, data.preferences, data.request)
    outbound = guard.request if guard is not None else data.request
    return _Call(table, routes, options, guard, outbound)


def _admit_chat(
    ctx: CallContext, principal: KeyPrincipal, data: validation.ChatInput, call: _Call
) -> None:
    route = call.routes[0]
    max_tokens = data.request.max_tokens
    context = route.context_length
    if max_tokens is not None and context and max_tokens > context:
        raise InvalidRequest(
            f"Invalid value for '{data.max_tokens_param}': the model '{route.model_id}' "
            f"has a context of {context} tokens, so it cannot produce {max_tokens}.",
            param=data.max_tokens_param,
            code=ErrorCode.INVALID_VALUE,
        )
    size = PromptSize.of(
        [m.text() for m in data.request.messages],
        prompt_counter(call.table, call.options, call.outbound.messages),
    )
    check_context(route, size, max_tokens, data.max_tokens_param)
    reserved = max_tokens or settings.XROUTER_DEFAULT_COMPLETION_ESTIMATE
    ctx.decision, allowed = admit(principal, route, size, reserved, cappable=True)
    # A cut stream is billed its prompt at this: the real count once asked.
    ctx.prompt_estimate = size.tokens
    if allowed < reserved:
        # The budget affords less than the reservation: the answer is capped
        # to what it can pay for instead of refusing the request.
        data.request = dataclasses.replace(data.request, max_tokens=allowed)
        call.outbound = dataclasses.replace(call.outbound, max_tokens=allowed)
        ctx.capped_max_tokens = allowed
    ctx.max_tokens = data.request.max_tokens


def complete_chat(
    request: HttpRequest, ctx: CallContext, principal: KeyPrincipal, data: validation.ChatInput
) -> ChatResponse:
    """Serve a whole completion; raise the client's error.

    The returned response carries the usage the client is shown and billed
    (:meth:`CallContext.plausible`).
    """
    call = _prepare(ctx, principal, data)
    _admit_chat(ctx, principal, data, call)
    started = time.perf_counter()
    try:
        with watch_client(request.META):
            outcome = router.execute(
                call.options,
                _chat_call(call.outbound, ctx, call.guard),
                call.table.adapter,
                deadline=deadline(),
            )
    except router.AllAttemptsFailed as exc:
        raise failure_error(ctx, exc) from None
    finally:
        ctx.upstream_ms = round((time.perf_counter() - started) * 1000, 2)
    result = outcome.result
    mark_served(ctx, outcome)
    ctx.usage = ctx.plausible(result.usage)
    result.usage = ctx.usage
    ctx.model_version = result.model_version
    ctx.upstream_id = result.id or ""
    if result.choices and result.choices[0].finish_reason is not None:
        ctx.finish_reason = str(result.choices[0].finish_reason)
    return result


def start_stream(
    request: HttpRequest, ctx: CallContext, principal: KeyPrincipal, data: validation.ChatInput
) -> tuple[ChatStream, ChatChunk | None]:
    """Open a streamed completion up to its first chunk; raise the client's error."""
    call = _prepare(ctx, principal, data)
    _admit_chat(ctx, principal, data, call)
    ctx.stream = True
    started = time.perf_counter()
    try:
        with watch_client(request.META):
            streamed = router.execute(
                call.options,
                _stream_call(call.outbound, ctx, call.guard),
                call.table.adapter,
                deadline=deadline(),
            )
    except router.AllAttemptsFailed as exc:
        raise failure_error(ctx, exc) from None
    finally:
        ctx.upstream_ms = round((time.perf_counter() - started) * 1000, 2)
    stream, first = streamed.result
    mark_served(ctx, streamed)
    ctx.upstream_id = stream.id or ""
    ctx.model_version = stream.model_version
    ctx.first_token_ms = ctx.upstream_ms
    return stream, first


def count_tokens(
    request: HttpRequest, ctx: CallContext, principal: KeyPrincipal, data: validation.ChatInput
) -> int:
    """Count the prompt's tokens with the model's own tokenizer where it has one.

    Routed like a call (PII guardrail, data policy, preferences, breakers,
    fallback) and admitted as a request without tokens; upstreams without a
    counting endpoint get the limiter's estimate.
    """
    call = _prepare(ctx, principal, data)
    outbound = call.outbound
    texts = [m.text() for m in outbound.messages if m.text()]
    texts += [tool.name + " " + orjson.dumps(tool.parameters).decode() for tool in outbound.tools]
    estimate = estimate_prompt_tokens(texts)
    ctx.max_tokens = 0
    ctx.decision, _none = admit(principal, call.routes[0], 0, 0)

    def count(adapter: Provider, candidate: router.Candidate, remaining: float) -> int:
        if not texts:
            return 0
        try:
            return sum(adapter.count_tokens(candidate.deployment.upstream, texts))
        except NotImplementedError:
            return estimate

    try:
        with watch_client(request.META):
            outcome = router.execute(call.options, count, call.table.adapter, deadline=deadline())
    except router.AllAttemptsFailed as exc:
        raise failure_error(ctx, exc) from None
    mark_served(ctx, outcome)
    ctx.usage = Usage()
    return outcome.result


def served_json(ctx: CallContext, body: dict[str, Any]) -> HttpResponse:
    """Return a served JSON answer with the routing and limit headers."""
    response = json_response(body)
    served_headers(response, ctx)
    return response


def stream_response(
    ctx: CallContext, stream: ChatStream, first: ChatChunk | None, encoder: StreamEncoder
) -> RelayResponse:
    """Return the SSE response relaying ``stream`` through the surface's ``encoder``."""
    streaming = RelayResponse(
        relay(stream, first, ctx, encoder),
        content_type="text/event-stream",
        on_close=(stream.close, ctx.finish),
    )
    streaming["Cache-Control"] = "no-store"
    # Tell nginx-style proxies not to buffer the stream.
    streaming["X-Accel-Buffering"] = "no"
    served_headers(streaming, ctx)
    return streaming
