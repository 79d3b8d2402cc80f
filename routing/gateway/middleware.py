"""Serve ``/v1/`` ahead of the rest of the middleware stack.

The OpenAI-compatible API needs none of sessions, CSRF, messages or the auth
middleware, and every layer costs time on the hot path. This middleware sits
first: it answers every ``/v1/`` request itself from a fixed route table and
hands everything else down the normal stack.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.http.response import HttpResponseBase

from routing.gateway import pipeline
from routing.gateway import views as gateway
from routing.gateway.context import CallContext
from routing.gateway.disconnect import ClientDisconnected
from routing.gateway.surfaces import completions, messages, responses
from xrouter_site.errors import (
    ErrorCode,
    MethodNotAllowed,
    NotFound,
    ServiceUnavailable,
    XRouterError,
)
from xrouter_site.middleware import request_id_from

logger = logging.getLogger(__name__)

PREFIX = "/v1/"
# Orchestrator probes: resolved against their own two-pattern URLconf.
PROBE_URLCONF = "xrouter_site.probe_urls"
PROBE_PATHS = frozenset({"/healthz", "/readyz"})
ANTHROPIC_PREFIX = "/v1/messages"
View = Callable[..., HttpResponseBase]

# Exact paths: (allowed methods, view).
ROUTES: dict[str, tuple[tuple[str, ...], View]] = {
    "/v1/chat/completions": (("POST",), gateway.chat_completions),
    "/v1/completions": (("POST",), completions.completions),
    "/v1/embeddings": (("POST",), gateway.embeddings),
    "/v1/messages": (("POST",), messages.messages),
    "/v1/messages/count_tokens": (("POST",), messages.count_tokens),
    "/v1/models": (("GET", "HEAD"), gateway.list_models),
    "/v1/responses": (("POST",), responses.create),
}
# Paths with one trailing argument: prefix -> (allowed methods, view).
PREFIX_ROUTES: dict[str, tuple[tuple[str, ...], View]] = {
    "/v1/models/": (("GET", "HEAD"), gateway.retrieve_model),
    "/v1/responses/": (("GET", "DELETE"), responses.detail),
}


class Overloaded(ServiceUnavailable):
    code = ErrorCode.SERVER_OVERLOADED
    default_message = "The gateway is at capacity. Retry shortly."

    def __init__(self) -> None:
        super().__init__(headers={"Retry-After": "1"})


def _resolve(path: str) -> tuple[tuple[str, ...], View, tuple[Any, ...]] | None:
    route = ROUTES.get(path) or ROUTES.get(path.rstrip("/"))
    if route is not None:
        return route[0], route[1], ()
    for prefix, (methods, view) in PREFIX_ROUTES.items():
        if path.startswith(prefix) and len(path) > len(prefix):
            return methods, view, (path[len(prefix) :],)
    return None


# /v1/ answers are JSON or SSE for programs: nothing may load from them and
# no page may frame them. Constant, so it costs one header assignment.
API_CSP = "default-src 'none'; frame-ancestors 'none'"


def _identify(response: HttpResponseBase, ctx: gateway.CallContext) -> None:
    """Name the request on every ``/v1/`` answer; forbid caching it.

    ``X-Generation-Id`` is the gateway's key of the request (what
    ``/api/v1/generation?id=`` takes); ``X-Request-ID`` echoes the client's
    correlation id. API answers are per key and may carry secrets (model
    output), so no cache along the way may keep them.
    """
    response["X-Request-ID"] = ctx.request_id
    response["X-Generation-Id"] = ctx.generation_id
    response["Cache-Control"] = "no-store"
    response["Content-Security-Policy"] = API_CSP


class GatewayMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        # Tests and operators can see which worker process answered.
        self.served_by = str(os.getpid()) if settings.XROUTER_DEBUG_SERVED_BY else None
        # Requests (streams included) this worker is serving; above the cap
        # new ones are shed at once with 503 instead of queueing behind them.
        self.inflight = 0
        self.max_inflight = settings.XROUTER_MAX_INFLIGHT_PER_WORKER

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        path = request.path_info
        if not path.startswith(PREFIX):
            if path in PROBE_PATHS:
                # Probes resolve against their own two-pattern URLconf: a
                # worker that only serves /v1/ never imports the site's
                # (xrouter_site/probe_urls.py, ~9.4 MB per worker).
                request.urlconf = PROBE_URLCONF
            return self.get_response(request)
        ctx = CallContext(
            request_id=request_id_from(request.META), method=request.method or "", path=path
        )
        response: HttpResponseBase
        if self.inflight >= self.max_inflight:
            response = ctx.fail(Overloaded())
            _identify(response, ctx)
            ctx.finish()
            return response
        self.inflight += 1
        ctx.on_finish = self._done
        response = self._dispatch(request, ctx, path)
        _identify(response, ctx)
        if self.served_by:
            response["X-Served-By"] = self.served_by
        if not response.streaming:
            ctx.finish()
        return response

    def _done(self) -> None:
        self.inflight -= 1

    def _dispatch(self, request: HttpRequest, ctx: CallContext, path: str) -> HttpResponseBase:
        if path.startswith(ANTHROPIC_PREFIX):
            # Wrong methods and paths there answer in Anthropic's dialect too.
            ctx.render_error = messages.error_response
        try:
            resolved = _resolve(path)
            if resolved is None:
                raise NotFound(f"Unknown API path {path}.")
            methods, view, args = resolved
            if request.method not in methods:
                raise MethodNotAllowed(request.method or "", methods)
            return view(request, ctx, *args)
        except XRouterError as exc:
            return ctx.fail(exc)
        except ClientDisconnected:
            # Raised while the upstream worked, before any byte was sent.
            return pipeline.client_gone(ctx)
        except Exception:
            logger.exception("unhandled error in the gateway", extra={"request_id": ctx.request_id})
            return ctx.fail(XRouterError())
