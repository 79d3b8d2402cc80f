"""The GigaChat emulator's deterministic reply rules, shared by its v1 and v2 handlers."""

from __future__ import annotations

import re

__all__ = [
    "ECHO_WORDS",
    "JSON_ASKED_RE",
    "PLACE_RE",
    "REPLY_PREFIX",
    "WEATHER_RE",
    "fake_value",
    "echo_words",
]

REPLY_PREFIX = "Ответ: "
ECHO_WORDS = 50
WEATHER_RE = re.compile(r"\bweather\b", re.IGNORECASE)
PLACE_RE = re.compile(r"\bin\s+([A-ZА-ЯЁ][\w-]*)")
#: A system message asking for a "JSON object" gets JSON back (fenced).
JSON_ASKED_RE = re.compile(r"\bJSON object\b")


def echo_words(text: str, limit: int = ECHO_WORDS) -> str:
    """Return the first ``limit`` words of ``text`` (what echo replies quote)."""
    found = text.split()
    return " ".join(found[:limit]) if found else "(empty)"


def fake_value(name: str, schema: object, place: str, depth: int = 0) -> object:
    """Return a deterministic value for a JSON-schema property."""
    if not isinstance(schema, dict) or depth > 8:
        return None
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind is None and isinstance(schema.get("properties"), dict):
        kind = "object"
    if kind == "string":
        lowered = name.lower()
        return place if any(k in lowered for k in ("location", "city", "place")) else "mock"
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return {}
        return {key: fake_value(key, sub, place, depth + 1) for key, sub in properties.items()}
    return None


#: reasoning_effort values for which the emulators think aloud.
THINKING_EFFORTS = frozenset({"low", "medium", "high"})


def reasoning_text(effort: object, last_user: str) -> str | None:
    """Return the reasoning a model shows at ``effort``, or None (no reasoning)."""
    if effort not in THINKING_EFFORTS:
        return None
    return f"Рассуждение ({effort}): пользователь пишет «{echo_words(last_user, 8)}»; отвечу эхом."
