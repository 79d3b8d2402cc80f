"""The SSE relay of a streamed chat completion.

Chunks go to the client as upstream sends them; the usage chunk, the
``[DONE]`` marker and, after a failure mid-stream, OpenAI's terminal error
event are added here. :class:`RelayResponse` makes sure the call is
finished even when the WSGI server never starts the generator.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from typing import Any

import orjson
from django.conf import settings
from django.http import StreamingHttpResponse

from providers.base import ChatChunk, ChatStream, Usage
from providers.errors import ProviderError
from routing.gateway.context import CallContext
from routing.gateway.openai_format import chunk_dict
from routing.limits.limiter import limiter
from xrouter_site.errors import ErrorCode, error_body

logger = logging.getLogger(__name__)

SSE_DONE = b"data: [DONE]\n\n"


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _is_usage_only(chunk: ChatChunk) -> bool:
    return (
        chunk.usage is not None
        and chunk.content is None
        and not chunk.tool_calls
        and chunk.finish_reason is None
        and chunk.role is None
    )


def relay(
    stream: ChatStream, first: ChatChunk | None, ctx: CallContext, include_usage: bool
) -> Iterator[bytes]:
    """Yield the client's SSE bytes chunk by chunk as upstream sends them.

    Closing this generator (the client went away: the WSGI server calls
    ``close()`` on the response) closes the upstream response at once. The
    client is billed for what it received: on a cut or a disconnect the
    usage is what upstream reported, or an estimate of the text relayed.
    """
    base = {
        "id": ctx.generation_id,
        "object": "chat.completion.chunk",
        "created": stream.created,
        "model": ctx.model,
    }
    reported: Usage | None = None
    relayed_chars = 0
    ctx.stream_complete = False
    renew_every = settings.XROUTER_LEASE_TTL_SECONDS / 3
    next_renewal = time.monotonic() + renew_every

    def pending() -> Iterator[ChatChunk]:
        if first is not None:
            yield first
        yield from stream

    try:
        for chunk in pending():
            if chunk.usage is not None:
                reported = chunk.usage
                if _is_usage_only(chunk):
                    continue
            if chunk.content:
                relayed_chars += len(chunk.content)
            if chunk.finish_reason is not None:
                ctx.finish_reason = str(chunk.finish_reason)
            yield _sse({**base, "choices": [chunk_dict(chunk)]})
            if ctx.decision is not None and time.monotonic() >= next_renewal:
                # A long stream keeps its concurrency slot.
                limiter.settle(ctx.decision, renew=True)
                next_renewal = time.monotonic() + renew_every
        if include_usage:
            shown = ctx.plausible(reported) if reported is not None else Usage()
            yield _sse({**base, "choices": [], "usage": shown.as_openai()})
        yield SSE_DONE
        ctx.stream_complete = True
    except ProviderError as exc:
        yield _stream_error(ctx, exc)
    except Exception:
        # An adapter choked on an event it did not expect (valid JSON of the
        # wrong shape): still a terminal error event, never a dropped stream.
        logger.exception(
            "upstream stream event could not be read",
            extra={"request_id": ctx.request_id, "provider": ctx.provider},
        )
        yield _stream_error(
            ctx,
            ProviderError(
                f"{ctx.provider} sent a stream event the gateway cannot read",
                provider=ctx.provider or "",
                retryable=False,
                code=ErrorCode.UPSTREAM_BAD_RESPONSE,
            ),
        )
    finally:
        stream.close()
        if reported is None:
            # Upstream never sent its count (cut or client gone): bill the
            # text delivered so far, estimated like the reservation.
            reported = Usage(
                prompt_tokens=ctx.prompt_estimate,
                completion_tokens=math.ceil(relayed_chars / 3) if relayed_chars else 0,
            )
        ctx.usage = reported
        ctx.finish()


def _stream_error(ctx: CallContext, exc: ProviderError) -> bytes:
    """Return the terminal error event of a stream that failed mid-way.

    Bytes already reached the client: no switch to another provider, only
    one error event in OpenAI's stream error shape (the message went through
    ProviderError's sanitiser, like a plain error's).
    """
    ctx.status = exc.status
    ctx.error_code = exc.code
    logger.warning(
        "upstream stream failed",
        extra={"request_id": ctx.request_id, "provider": exc.provider, "code": exc.code},
    )
    return _sse(error_body(exc.message, code=exc.code, type_="api_error"))


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
