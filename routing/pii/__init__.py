"""The PII guardrail: detectors for Russian and common identifiers, and the
redact / block modes applied on the gateway's hot path (see ``guard``)."""

from routing.pii.detectors import KINDS, Finding, find
from routing.pii.guard import ChatGuard, PiiDetected, guard_chat, guard_embedding
from routing.pii.redaction import Redaction, StreamRestorer

__all__ = [
    "KINDS",
    "ChatGuard",
    "Finding",
    "PiiDetected",
    "Redaction",
    "StreamRestorer",
    "find",
    "guard_chat",
    "guard_embedding",
]
