"""Replace personal data with typed placeholders and put it back.

:class:`Redaction` belongs to one request. ``redact()`` swaps each value
found by :mod:`routing.pii.detectors` for ``[KIND_n]`` (the same value gets
the same placeholder everywhere in the request, so the model can still
refer to it); ``restore()`` swaps placeholders the model echoes back for
the original values. :class:`StreamRestorer` does the same over a stream of
text pieces, holding back a tail that may be the start of a placeholder
split across chunks (``"[PHO"`` + ``"NE_1]"``) until it can tell.
"""

from __future__ import annotations

import re
from collections import Counter

from routing.pii.detectors import KINDS, find

_PLACEHOLDER = re.compile(r"\[(?:" + "|".join(k.upper() for k in KINDS) + r")_\d{1,6}\]")
# The longest placeholder is "[PASSPORT_999999]": 17 characters.
_MAX_PLACEHOLDER = 2 + max(len(k) for k in KINDS) + 1 + 6
_PARTIAL = re.compile(r"\[[A-Z]*(?:_\d{0,6})?$")


class Redaction:
    """The placeholders of one request and the values behind them."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}  # placeholder -> original value
        self._placeholders: dict[tuple[str, str], str] = {}  # (kind, value) -> placeholder
        self._next: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()

    def _placeholder(self, kind: str, value: str, text: str) -> str:
        existing = self._placeholders.get((kind, value))
        if existing is not None:
            return existing
        while True:
            self._next[kind] += 1
            placeholder = f"[{kind.upper()}_{self._next[kind]}]"
            # Never reuse a placeholder the client's own text already contains.
            if placeholder not in text:
                break
        self._placeholders[(kind, value)] = placeholder
        self.values[placeholder] = value
        return placeholder

    def redact(self, text: str) -> str:
        """Return ``text`` with every value found replaced by its placeholder."""
        findings = find(text)
        if not findings:
            return text
        out: list[str] = []
        position = 0
        for finding in findings:
            self.counts[finding.kind] += 1
            out.append(text[position : finding.start])
            out.append(self._placeholder(finding.kind, finding.value(text), text))
            position = finding.end
        out.append(text[position:])
        return "".join(out)

    def restore(self, text: str) -> str:
        """Return ``text`` with this request's placeholders replaced by their values."""
        if not self.values or "[" not in text:
            return text
        return _PLACEHOLDER.sub(lambda m: self.values.get(m.group(), m.group()), text)

    def restorer(self) -> StreamRestorer:
        return StreamRestorer(self)


class StreamRestorer:
    """Restore placeholders in text that arrives in pieces."""

    def __init__(self, redaction: Redaction) -> None:
        self.redaction = redaction
        self.pending = ""

    def feed(self, piece: str) -> str:
        """Return what can be shown of ``piece`` now; keep a possible partial placeholder."""
        text = self.pending + piece
        self.pending = ""
        cut = text.rfind("[")
        if cut >= 0 and len(text) - cut < _MAX_PLACEHOLDER and _PARTIAL.match(text, cut):
            text, self.pending = text[:cut], text[cut:]
        return self.redaction.restore(text)

    def flush(self) -> str:
        """Return whatever is held back (the stream ended)."""
        text, self.pending = self.pending, ""
        return self.redaction.restore(text)
