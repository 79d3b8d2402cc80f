"""JSON log lines, a filter that keeps secrets out of them, the access line.

:class:`AccessLineHandler` is the handler of ``xrouter.access``. Besides
formatting ordinary records like :class:`JsonFormatter`, it writes the
gateway's access line straight from its fields (:func:`write_access`): the
same line, without a ``LogRecord`` (``findCaller`` walks the stack), the
logger's handler chain and the formatter's walk over record attributes.
Issue 19 measured 53 us of CPU per line through ``logging`` (12 % of a
non-stream request); see bench/profiles/features-access-log.txt.
"""

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


def _timestamp(created: float, msecs: float) -> str:
    """``created`` as ``2026-12-01T16:20:03.361Z`` (UTC, milliseconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """Format each record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record.created, record.msecs),
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


class AccessLineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The ``xrouter.access`` handler; :func:`write_access` writes to it directly.

    The access line's fields are the gateway's own (ids, key prefix, team
    slug, catalog names, numbers), never free text, so it has no redaction
    filter (settings.LOGGING) and needs none here.
    """

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self.setFormatter(JsonFormatter())
        # (whole second, its "YYYY-mm-ddTHH:MM:SS" text): strftime once a second.
        self._second: tuple[int, str] = (-1, "")

    def write_line(self, logger: str, msg: str, fields: dict[str, Any]) -> None:
        """Write what ``JsonFormatter`` would make of an INFO record with ``extra=fields``."""
        created = time.time()
        second = int(created)
        if second != self._second[0]:
            self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        # The same millisecond rounding as logging.LogRecord.msecs.
        entry: dict[str, Any] = {
            "ts": f"{self._second[1]}.{int((created - second) * 1000):03d}Z",
            "level": "INFO",
            "logger": logger,
            "msg": msg,
        }
        entry.update(fields)
        line = orjson.dumps(entry, default=str, option=orjson.OPT_APPEND_NEWLINE).decode()
        with self.lock:  # type: ignore[union-attr]
            try:
                self.stream.write(line)
                self.stream.flush()
            except Exception:
                # What logging does with a failed emit: report it, go on.
                self.handleError(logging.makeLogRecord({"name": logger, "msg": msg}))


def write_access(logger: logging.Logger, msg: str, fields: dict[str, Any]) -> None:
    """Log ``fields`` as an INFO line of ``logger``, the short way when nothing else listens.

    The short way needs the production set-up: the logger's only handler an
    :class:`AccessLineHandler` without filters, no filters on the logger and
    no propagation. Any other set-up (a test's handler, caplog, an
    operator's logging config) gets an ordinary ``logger.info`` and sees the
    same record it always did.
    """
    if not logger.isEnabledFor(logging.INFO):
        return
    handlers = logger.handlers
    if (
        len(handlers) == 1
        and type(handlers[0]) is AccessLineHandler
        and not logger.propagate
        and not logger.filters
        and not handlers[0].filters
        and handlers[0].level <= logging.INFO
    ):
        handlers[0].write_line(logger.name, msg, fields)
    else:
        logger.info(msg, extra=fields)
