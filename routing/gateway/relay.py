"""The SSE relay of a streamed completion, for every API surface.

Chunks go to the client as upstream sends them, turned into the surface's
events by its :class:`StreamEncoder` (chat's own is :class:`ChatEncoder`:
chunks, the usage chunk, ``[DONE]`` and, after a failure mid-stream,
OpenAI's terminal error event). Billing, lease renewal and the end of the
call are the relay's, whatever the surface. :class:`RelayResponse` makes sure the call is
finished even when the WSGI server never starts the generator.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from typing import Any, Protocol

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


def sse_data(payload: dict[str, Any]) -> bytes:
    """An unnamed SSE event (OpenAI's streams)."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _is_usage_only(chunk: ChatChunk) -> bool:
    return (
        chunk.usage is not None
        and chunk.content is None
        and not chunk.reasoning_content
        and not chunk.tool_calls
        and chunk.finish_reason is None
        and chunk.role is None
    )


def sse_event(name: str, payload: dict[str, Any]) -> bytes:
    """A named SSE event (``event:`` line), as Anthropic and Responses streams use."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def openai_stream_error(exc: ProviderError) -> bytes:
    """OpenAI's terminal stream error event."""
    return sse_data(error_body(exc.message, code=exc.code, type_="api_error"))


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
            "id": ctx.generation_id,
            "object": "chat.completion.chunk",
            "created": stream.created,
            "model": ctx.model,
        }
        self.include_usage = include_usage
        #: A pass-through chunk's event is this, upstream's bytes from
        #: ``"choices"`` on, then the blank line: our id, created and model.
        self.raw_head = b"data: " + orjson.dumps(self.base)[:-1] + b","

    def start(self) -> bytes:
        return b""

    def chunk(self, chunk: ChatChunk) -> bytes:
        return sse_data({**self.base, "choices": [chunk_dict(chunk)]})

    def end(self, usage: Usage) -> bytes:
        if not self.include_usage:
            return SSE_DONE
        return sse_data({**self.base, "choices": [], "usage": usage.as_openai()}) + SSE_DONE

    def error(self, exc: ProviderError) -> bytes:
        return openai_stream_error(exc)


def relay(
    stream: ChatStream, first: ChatChunk | None, ctx: CallContext, encoder: StreamEncoder
) -> Iterator[bytes]:
    """Yield the client's bytes as upstream sends them.

    The chunks of one upstream read go out as one write (one chunked
    frame, one ``send``): under load upstream's bytes queue up, so several
    events share a system call, while a quiet stream's event is never held
    for a next one (issue 19). Closing this generator (the client went
    away: the WSGI server calls ``close()`` on the response) closes the
    upstream response at once. The client is billed for what it received:
    on a cut or a disconnect the usage is what upstream reported, or an
    estimate of the text relayed.
    """
    # Content chunks an OpenAI-format adapter passed through
    # (providers.passthrough) go out as upstream's bytes on chat's surface.
    raw_head = encoder.raw_head if stream.passthrough and isinstance(encoder, ChatEncoder) else None
    reported: Usage | None = None
    relayed_chars = 0
    ctx.stream_complete = False
    renew_every = settings.XROUTER_LEASE_TTL_SECONDS / 3
    next_renewal = time.monotonic() + renew_every
    # The bytes of the read being relayed; sent before a terminal error.
    out: list[bytes] = []

    def pending() -> Iterator[list[ChatChunk]]:
        if first is not None:
            yield [first]
        yield from stream.batches()

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
        for batch in pending():
            if ctx.decision is not None and time.monotonic() >= next_renewal:
                # A long stream keeps its concurrency slot.
                limiter.settle(ctx.decision, renew=True)
                next_renewal = time.monotonic() + renew_every
            for chunk in batch:
                if chunk.raw is not None and raw_head is not None:
                    relayed_chars += len(chunk.content or "")
                    out += (raw_head, chunk.raw, b"\n\n")
                    continue
                if chunk.usage is not None:
                    reported = chunk.usage
                    if _is_usage_only(chunk):
                        continue
                if chunk.content:
                    relayed_chars += len(chunk.content)
                for call in chunk.tool_calls:
                    relayed_chars += len(call.arguments)
                if chunk.finish_reason is not None:
                    ctx.finish_reason = str(chunk.finish_reason)
                encoded = encoder.chunk(chunk)
                if encoded:
                    out.append(encoded)
            if out:
                data = b"".join(out)
                out.clear()
                yield data
        # What the client is shown is what it is billed, clamped like it.
        yield encoder.end(ctx.plausible(billed()))
        ctx.stream_complete = True
    except ProviderError as exc:
        yield b"".join(out) + _stream_error(ctx, encoder, exc)
    except Exception:
        # An adapter choked on an event it did not expect (valid JSON of the
        # wrong shape): still the surface's terminal error event, never a
        # dropped stream.
        logger.exception(
            "upstream stream event could not be read",
            extra={"request_id": ctx.request_id, "provider": ctx.provider},
        )
        yield b"".join(out) + _stream_error(
            ctx,
            encoder,
            ProviderError(
                f"{ctx.provider} sent a stream event the gateway cannot read",
                provider=ctx.provider or "",
                retryable=False,
                code=ErrorCode.UPSTREAM_BAD_RESPONSE,
            ),
        )
    finally:
        stream.close()
        ctx.usage = billed()
        ctx.finish()


def _stream_error(ctx: CallContext, encoder: StreamEncoder, exc: ProviderError) -> bytes:
    """Return the terminal error event of a stream that failed mid-way.

    Bytes already reached the client: no switch to another provider, only
    one error event in the surface's stream error shape (the message went
    through ProviderError's sanitiser, like a plain error's).
    """
    ctx.status = exc.status
    ctx.error_code = exc.code
    logger.warning(
        "upstream stream failed",
        extra={"request_id": ctx.request_id, "provider": exc.provider, "code": exc.code},
    )
    return encoder.error(exc)


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
