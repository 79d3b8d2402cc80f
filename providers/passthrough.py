"""Pass OpenAI-format content chunks through without parsing them (issue 19).

Most events of a streamed answer are content deltas whose bytes differ only
in the text: ``{"id":...,"model":...,"choices":[{"index":0,"delta":
{"content":"<text>"},"logprobs":null,"finish_reason":null}]}``. The gateway
needs nothing from them but the text's length (the estimate it bills when
a stream is cut), so once one such event has been parsed and checked, the
next ones are recognised by byte comparison: the same bytes before the
text, the same bytes after it, and a text that is one JSON string. Those
come out as a :class:`~providers.base.ChatChunk` with ``raw`` set to the
event from ``"choices"`` on, which the relay sends after its own ``id``,
``created`` and ``model`` with no parse and no re-serialisation.

Anything else (the role chunk, finish reasons, usage, tool calls, errors,
a changed ``id`` or ``model``, extra fields after the choices, several
choices) differs from the learned bytes and takes the full parse.

Usage, in an adapter's stream loop::

    scanner = ChunkScanner()
    for payload in iter_sse_data(response, provider=self.name):
        chunk = scanner.chunk(payload)
        if chunk is None:
            data = loads_event(payload, provider=self.name)
            ...  # the full parse
            scanner.learn(payload, data)
"""

from __future__ import annotations

from typing import Any

import orjson

from providers.base import ChatChunk

_CHOICES = b'"choices":['
_CONTENT = b'"content":"'


class ChunkScanner:
    """Recognise content-only chunks shaped like one already parsed."""

    __slots__ = ("_prefix", "_suffix", "_head_length", "_minimum")

    def __init__(self) -> None:
        self._prefix: bytes | None = None
        self._suffix = b""
        self._head_length = 0
        self._minimum = 0

    def learn(self, payload: bytes, data: Any) -> None:
        """Take ``payload``'s shape if it is a checked content-only chunk."""
        if self._prefix is not None or not _content_only(data):
            return
        choices = payload.find(_CHOICES)
        if choices < 0:
            return
        start = payload.find(_CONTENT, choices)
        if start < 0:
            return
        start += len(_CONTENT)
        end = _string_end(payload, start)
        if end is None:
            return
        try:
            text = orjson.loads(b'"' + payload[start:end] + b'"')
        except orjson.JSONDecodeError:
            return
        if text != data["choices"][0]["delta"]["content"]:
            return
        self._prefix = payload[:start]
        self._suffix = payload[end:]
        self._head_length = choices
        self._minimum = len(self._prefix) + len(self._suffix)

    def chunk(self, payload: bytes) -> ChatChunk | None:
        """Return the pass-through chunk for ``payload``, or None: parse it."""
        prefix = self._prefix
        if (
            prefix is None
            or len(payload) < self._minimum
            or not payload.startswith(prefix)
            or not payload.endswith(self._suffix)
        ):
            return None
        text = payload[len(prefix) : len(payload) - len(self._suffix)]
        if b"\\" in text:
            # Escapes: orjson decodes them, and refuses a quote that would
            # end the string early (the bytes after it are not our suffix).
            try:
                content = orjson.loads(b'"' + text + b'"')
            except orjson.JSONDecodeError:
                return None
            if not isinstance(content, str):
                return None
        elif b'"' in text:
            return None
        else:
            try:
                content = text.decode()
            except UnicodeDecodeError:
                return None
        return ChatChunk(content=content, raw=payload[self._head_length :])


def _content_only(data: Any) -> bool:
    """A chunk with one choice (index 0) whose delta is only non-empty text."""
    if not isinstance(data, dict) or data.get("usage") or "error" in data:
        return False
    choices = data.get("choices")
    if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], dict):
        return False
    choice = choices[0]
    delta = choice.get("delta")
    return (
        choice.get("index", 0) == 0
        and choice.get("finish_reason") is None
        and isinstance(delta, dict)
        and list(delta) == ["content"]
        and isinstance(delta["content"], str)
        and delta["content"] != ""
    )


def _string_end(payload: bytes, start: int) -> int | None:
    """Index of the quote that ends the JSON string starting at ``start``."""
    position = start
    while True:
        quote = payload.find(b'"', position)
        if quote < 0:
            return None
        backslashes = 0
        while payload[quote - 1 - backslashes] == 0x5C:  # "\"
            backslashes += 1
        if backslashes % 2 == 0:
            return quote
        position = quote + 1
