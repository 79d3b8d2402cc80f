"""The OpenAI-compatible API under ``/v1/``: the gateway's hot path.

Plain Django views, dispatched by :class:`routing.gateway.middleware.GatewayMiddleware`
before sessions, CSRF and auth middleware run. A warm request touches no
database: the key comes from :mod:`keys.auth`, the route from
:mod:`routing.table`, limits are one Redis script (:mod:`routing.limits.limiter`),
and usage is handed to :mod:`routing.usage.records`, which writes it in batches.

A request goes: authenticate, validate, resolve the model(s), check limits,
try deployments until one serves (:mod:`routing.gateway.pipeline`, shared by
every surface), answer, then (:meth:`CallContext.finish`) settle limits with
the real usage, record usage and metrics, and write the access log line.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from providers.base import EmbeddingRequest, EmbeddingResponse, Provider
from providers.errors import bad_response
from routing import pii, router
from routing.gateway import pipeline, validation
from routing.gateway.auth import authenticate
from routing.gateway.context import CallContext
from routing.gateway.disconnect import watch_client
from routing.gateway.openai_format import encode_vector, message_dict, model_dict
from routing.gateway.relay import ChatEncoder
from routing.limits.admission import admit, estimate_prompt_tokens
from routing.router import AttemptCall
from routing.table import get_table
from xrouter_site.errors import ErrorCode, ModelNotFound, json_response

logger = logging.getLogger(__name__)

# --- chat completions ---------------------------------------------------------


def chat_completions(request: HttpRequest, ctx: CallContext) -> HttpResponseBase:
    ctx.endpoint = "chat"
    principal = authenticate(request, ctx)
    data = validation.chat_input(pipeline.read_json(request, ctx))
    pipeline.note_session(request, data)
    if data.request.stream:
        stream, first = pipeline.start_stream(request, ctx, principal, data)
        return pipeline.stream_response(
            ctx, stream, first, ChatEncoder(stream, ctx, data.include_usage)
        )
    result = pipeline.complete_chat(request, ctx, principal, data)
    return pipeline.served_json(
        ctx,
        {
            "id": ctx.generation_id,
            "object": "chat.completion",
            "created": result.created,
            "model": ctx.model,
            "choices": message_dict(result),
            "usage": result.usage.as_openai(),
        },
    )


# --- embeddings ---------------------------------------------------------------


def _embed_call(request: EmbeddingRequest, ctx: CallContext) -> AttemptCall[EmbeddingResponse]:
    def call(adapter: Provider, candidate: router.Candidate, remaining: float) -> EmbeddingResponse:
        attempt = dataclasses.replace(
            request, model=candidate.deployment.upstream, request_id=ctx.request_id
        )
        result = adapter.embed(attempt)
        if len(result.vectors) != len(attempt.inputs):
            raise bad_response(
                candidate.deployment.provider,
                f"{candidate.deployment.provider} returned {len(result.vectors)} vectors "
                f"for {len(attempt.inputs)} inputs",
            )
        return result

    return call


def embeddings(request: HttpRequest, ctx: CallContext) -> HttpResponse:
    ctx.endpoint = "embeddings"
    principal = authenticate(request, ctx)
    data = validation.embedding_input(pipeline.read_json(request, ctx))
    table = get_table()
    ctx.requested_model = data.model
    try:
        outbound, ctx.pii_counts = pii.guard_embedding(data.request, principal.pii_mode)
    except pii.PiiDetected as exc:
        ctx.pii_counts = exc.counts
        raise
    routes = pipeline.routes_for(table, data.model, [], principal, "embedding")
    ctx.model, ctx.route = routes[0].model_id, routes[0]
    options = pipeline.candidates_for(table, routes, principal, data.preferences)
    ctx.max_tokens = 0
    ctx.decision, _none = admit(
        principal, routes[0], estimate_prompt_tokens(data.request.inputs), 0
    )
    started = time.perf_counter()
    try:
        with watch_client(request.META):
            outcome = router.execute(
                options, _embed_call(outbound, ctx), table.adapter, deadline=pipeline.deadline()
            )
    except router.AllAttemptsFailed as exc:
        raise pipeline.failure_error(ctx, exc) from None
    finally:
        ctx.upstream_ms = round((time.perf_counter() - started) * 1000, 2)
    result = outcome.result
    pipeline.mark_served(ctx, outcome)
    ctx.usage = ctx.plausible(result.usage)
    return pipeline.served_json(
        ctx,
        {
            "object": "list",
            "data": [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": encode_vector(v, data.encoding_format),
                }
                for i, v in enumerate(result.vectors)
            ],
            "model": ctx.model,
            "usage": {
                "prompt_tokens": ctx.usage.prompt_tokens,
                "total_tokens": ctx.usage.total_tokens,
            },
        },
    )


# --- models ------------------------------------------------------------------------


def list_models(request: HttpRequest, ctx: CallContext) -> HttpResponse:
    principal = authenticate(request, ctx)
    table = get_table()
    data = [
        model_dict(route)
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
    return json_response(model_dict(route))
