"""The PII guardrail on the gateway's hot path.

A team's ``pii_mode`` (or a stricter one on the key) decides:

- ``off``: nothing is scanned; the guard costs nothing.
- ``block``: a request with personal data anywhere in its messages or tool
  arguments is refused with 400 ``pii_detected``, naming the kinds found
  and never the values.
- ``redact``: every value is replaced by a typed placeholder before the
  upstream call, and placeholders the model echoes are replaced by the
  original values in the answer, streams included, so the client sees its
  own data and the provider never does.

Only counts by kind (``{"phone": 2}``) leave this module, for the usage
record and the access log.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import orjson

from providers.base import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ChatStream,
    EmbeddingRequest,
    Message,
    ToolCall,
    ToolCallDelta,
)
from routing.pii.detectors import find
from routing.pii.redaction import Redaction, StreamRestorer
from xrouter_site.errors import ErrorCode, XRouterError

OFF = "off"
REDACT = "redact"
BLOCK = "block"


class PiiDetected(XRouterError):
    """400 ``pii_detected``: the request carries personal data and the mode is block."""

    http_status = 400
    type = "invalid_request_error"
    code = ErrorCode.PII_DETECTED

    def __init__(self, counts: dict[str, int]) -> None:
        kinds = ", ".join(sorted(counts))
        super().__init__(
            f"The request contains personal data ({kinds}) and this key's PII mode is "
            "'block'. Remove it, or ask a team owner to switch the mode to 'redact'."
        )
        self.counts = counts


def _texts(messages: list[Message]) -> Iterator[str]:
    for message in messages:
        if isinstance(message.content, str):
            yield message.content
        elif message.content:
            for part in message.content:
                if part.get("type") == "text" and isinstance(part.get("text"), str):
                    yield part["text"]
        for call in message.tool_calls:
            yield call.arguments


def _count(texts: Iterator[str] | list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for text in texts:
        for finding in find(text):
            counts[finding.kind] = counts.get(finding.kind, 0) + 1
    return counts


def _redact_json(value: Any, redaction: Redaction) -> Any:
    if isinstance(value, str):
        return redaction.redact(value)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        # {"inn": 7707083893}: a number that is personal data becomes a
        # placeholder string (a bare placeholder is not a JSON number).
        text = str(value)
        redacted = redaction.redact(text)
        return value if redacted == text else redacted
    if isinstance(value, list):
        return [_redact_json(item, redaction) for item in value]
    if isinstance(value, dict):
        return {key: _redact_json(item, redaction) for key, item in value.items()}
    return value


def _redact_arguments(arguments: str, redaction: Redaction) -> str:
    """Redact a tool call's JSON arguments, keeping them valid JSON."""
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return redaction.redact(arguments)
    redacted = _redact_json(parsed, redaction)
    if redacted == parsed:
        return arguments
    return orjson.dumps(redacted).decode()


def _redact_message(message: Message, redaction: Redaction) -> Message:
    content = message.content
    if isinstance(content, str):
        content = redaction.redact(content)
    elif content:
        content = [
            {**part, "text": redaction.redact(part["text"])}
            if part.get("type") == "text" and isinstance(part.get("text"), str)
            else part
            for part in content
        ]
    tool_calls = [
        ToolCall(id=c.id, name=c.name, arguments=_redact_arguments(c.arguments, redaction))
        for c in message.tool_calls
    ]
    return dataclasses.replace(message, content=content, tool_calls=tool_calls)


class ChatGuard:
    """One chat request's redaction: the request to send and how to restore."""

    def __init__(self, request: ChatRequest, redaction: Redaction) -> None:
        self.request = request
        self.redaction = redaction

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.redaction.counts)

    def restore_response(self, response: ChatResponse) -> ChatResponse:
        restore = self.redaction.restore
        for choice in response.choices:
            message = choice.message
            if isinstance(message.content, str):
                message.content = restore(message.content)
            for call in message.tool_calls:
                call.arguments = restore(call.arguments)
        return response

    def wrap_stream(self, stream: ChatStream) -> ChatStream:
        return RestoringStream(stream, self.redaction)


def guard_chat(request: ChatRequest, mode: str) -> ChatGuard | None:
    """Apply ``mode`` to a chat request.

    Returns None when there is nothing to do (mode off, or redact with no
    personal data found); raises :class:`PiiDetected` in block mode.
    """
    if mode == OFF:
        return None
    if mode == BLOCK:
        counts = _count(_texts(request.messages))
        if counts:
            raise PiiDetected(counts)
        return None
    redaction = Redaction()
    messages = [_redact_message(m, redaction) for m in request.messages]
    if not redaction.counts:
        return None
    return ChatGuard(dataclasses.replace(request, messages=messages), redaction)


def guard_embedding(
    request: EmbeddingRequest, mode: str
) -> tuple[EmbeddingRequest, dict[str, int]]:
    """Apply ``mode`` to an embedding request: block, or redact the inputs.

    Vectors have nothing to restore, so redacted inputs are simply embedded
    with their placeholders.
    """
    if mode == OFF:
        return request, {}
    if mode == BLOCK:
        counts = _count(request.inputs)
        if counts:
            raise PiiDetected(counts)
        return request, {}
    redaction = Redaction()
    inputs = [redaction.redact(text) for text in request.inputs]
    if not redaction.counts:
        return request, {}
    return dataclasses.replace(request, inputs=inputs), dict(redaction.counts)


class RestoringStream(ChatStream):
    """A :class:`ChatStream` whose text has this request's placeholders restored.

    Content and each tool call's arguments have their own
    :class:`StreamRestorer`; what they hold back is released with the chunk
    that carries the finish reason, or in a last chunk if upstream ends
    without one. ``id``, ``model`` and ``model_version`` are copied from the
    upstream stream after every chunk (adapters fill them in as chunks arrive).
    """

    def __init__(self, inner: ChatStream, redaction: Redaction) -> None:
        super().__init__(iter(()), id=inner.id, model=inner.model, created=inner.created)
        self.model_version = inner.model_version
        self._inner = inner
        self._redaction = redaction
        self._content: dict[int, StreamRestorer] = {}
        self._arguments: dict[tuple[int, int], StreamRestorer] = {}
        self._finished = False

    def _sync(self) -> None:
        # Adapters fill these in as chunks arrive.
        self.id = self._inner.id
        self.model = self._inner.model
        self.created = self._inner.created
        self.model_version = self._inner.model_version

    def close(self) -> None:
        self.closed = True
        self._inner.close()

    def _flush(self, index: int, chunk: ChatChunk) -> None:
        content = self._content.pop(index, None)
        if content is not None:
            rest = content.flush()
            if rest:
                chunk.content = rest + (chunk.content or "")
        for key in sorted(k for k in self._arguments if k[0] == index):
            rest = self._arguments.pop(key).flush()
            if rest:
                chunk.tool_calls.append(ToolCallDelta(index=key[1], arguments=rest))

    def __next__(self) -> ChatChunk:
        try:
            chunk = next(self._inner)
        except StopIteration:
            self._sync()
            if self._finished or not (self._content or self._arguments):
                raise
            self._finished = True
            last = ChatChunk(index=min([*self._content, *(k[0] for k in self._arguments)]))
            for index in sorted({*self._content, *(k[0] for k in self._arguments)}):
                self._flush(index, last)
            if last.content is None and not last.tool_calls:
                raise
            return last
        self._sync()
        if chunk.content:
            restorer = self._content.setdefault(chunk.index, self._redaction.restorer())
            chunk.content = restorer.feed(chunk.content)
        for delta in chunk.tool_calls:
            if delta.arguments:
                key = (chunk.index, delta.index)
                restorer = self._arguments.setdefault(key, self._redaction.restorer())
                delta.arguments = restorer.feed(delta.arguments)
        if chunk.finish_reason is not None:
            self._flush(chunk.index, chunk)
        return chunk
