"""JSON log lines and a filter that keeps secrets out of them."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import orjson

# Attributes every LogRecord has; anything else came in through ``extra``.
_RECORD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}

# Our keys, bearer credentials, and provider tokens (GigaChat access tokens
# are JWT-like, Yandex IAM tokens start with t1., API keys with AQVN).
_SECRET_PATTERNS = [
    re.compile(r"xr_(?:live|test|mgmt)_[0-9A-Za-z]{8,}"),
    re.compile(r"(?i)\b(bearer|basic|api-key)\s+[^\s\"',]+"),
    re.compile(r"\beyJ[0-9A-Za-z_-]{10,}\.[0-9A-Za-z_-]{10,}\.[0-9A-Za-z_-]*"),
    re.compile(r"\bt1\.[0-9A-Za-z_.-]{20,}"),
    re.compile(r"\bAQVN[0-9A-Za-z_-]{20,}"),
    # OpenAI-style upstream keys, which OpenAI-compatible upstreams echo back
    # in "Incorrect API key provided: sk-..." errors.
    re.compile(r"\bsk-[0-9A-Za-z_-]{16,}"),
]
_SENSITIVE_KEYS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "cookie",
        "set-cookie",
        "api_key",
        "password",
        "secret",
        "token",
        "access_token",
        "refresh_token",
    }
)
REDACTED = "[redacted]"


def redact(value: Any) -> Any:
    """Return ``value`` with anything that looks like a credential masked."""
    if isinstance(value, str):
        for pattern in _SECRET_PATTERNS:
            if pattern.groups:
                value = pattern.sub(lambda m: f"{m.group(1)} {REDACTED}", value)
            else:
                value = pattern.sub(REDACTED, value)
        return value
    if isinstance(value, dict):
        return {
            k: REDACTED if str(k).lower() in _SENSITIVE_KEYS else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(redact(v) for v in value)
    return value


class RedactSecretsFilter(logging.Filter):
    """Mask credentials in the message, its args and ``extra`` fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if record.args:
            if isinstance(record.args, dict):
                record.args = redact(record.args)
            else:
                record.args = tuple(redact(a) for a in record.args)
        for name, value in list(vars(record).items()):
            if name not in _RECORD_ATTRS:
                setattr(
                    record, name, REDACTED if name.lower() in _SENSITIVE_KEYS else redact(value)
                )
        return True


class JsonFormatter(logging.Formatter):
    """Format each record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRS:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()
