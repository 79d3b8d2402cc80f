"""The access line's short way (AccessLineHandler.write_line) writes what logging would."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from xrouter_site.logging import AccessLineHandler, JsonFormatter, write_access

FIELDS = {
    "request_id": "r-1",
    "generation_id": "gen-1700000000-abcdefghijklmnopqrst",
    "method": "POST",
    "path": "/v1/chat/completions",
    "status": 200,
    "latency_ms": 1.25,
    "key_prefix": "xr_live_abcd",
    "team": "acme",
    "model": "local/mock",
    "provider": None,
    "upstream_ms": None,
    "cost_rub": "0.0123",
    "pii": {"email": 1},
}


@pytest.fixture
def access(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger set up as settings.LOGGING sets up ``xrouter.access``.

    pytest attaches its capture handler to every non-propagating logger
    when a test starts; the logger gets its handlers here, after that.
    """
    stream = io.StringIO()
    logger = logging.getLogger("tests.access-line")
    monkeypatch.setattr(logger, "propagate", False)
    monkeypatch.setattr(logger, "level", logging.INFO)
    logger.manager._clear_cache()  # type: ignore[attr-defined]
    yield logger, stream
    logger.manager._clear_cache()  # type: ignore[attr-defined]


def _only(logger: logging.Logger, stream: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logger, "handlers", [AccessLineHandler(stream)])


def test_the_short_way_writes_the_formatters_line(
    access: tuple[logging.Logger, io.StringIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    logger, stream = access
    _only(logger, stream, monkeypatch)
    # The handler must take the short way: logging's own path is not there.
    monkeypatch.setattr(logger, "handle", lambda record: pytest.fail("took the LogRecord path"))
    write_access(logger, "request", FIELDS)
    [line] = stream.getvalue().splitlines()
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "request", (), None)
    for name, value in FIELDS.items():
        setattr(record, name, value)
    expected = orjson.loads(JsonFormatter().format(record))
    got = orjson.loads(line)
    assert list(got) == list(expected)  # same keys, same order
    assert got.pop("ts")[:13] == expected.pop("ts")[:13]  # same hour, same shape
    assert got == expected


def test_timestamp_is_utc_with_milliseconds(
    access: tuple[logging.Logger, io.StringIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    logger, stream = access
    _only(logger, stream, monkeypatch)
    for _ in range(3):
        write_access(logger, "request", {"status": 200})
    for line in stream.getvalue().splitlines():
        ts = orjson.loads(line)["ts"]
        assert len(ts) == len("2026-12-01T16:20:03.361Z") and ts[10] == "T" and ts[-1] == "Z"
        assert ts[-5] == "." and ts[-4:-1].isdigit()


def test_another_listener_gets_an_ordinary_record(
    access: tuple[logging.Logger, io.StringIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    logger, stream = access
    _only(logger, stream, monkeypatch)
    seen: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    logger.addHandler(Collect())
    write_access(logger, "request", FIELDS)
    [record] = seen
    assert record.getMessage() == "request" and record.pii == {"email": 1}  # type: ignore[attr-defined]
    # The access handler still wrote its line, through logging this time.
    assert orjson.loads(stream.getvalue())["request_id"] == "r-1"


def test_nothing_is_written_below_the_level(
    access: tuple[logging.Logger, io.StringIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    logger, stream = access
    _only(logger, stream, monkeypatch)
    monkeypatch.setattr(logger, "level", logging.CRITICAL)
    logger.manager._clear_cache()  # type: ignore[attr-defined]  # what XROUTER_ACCESS_LOG=false sets
    write_access(logger, "request", FIELDS)
    assert stream.getvalue() == ""


def test_a_failed_write_does_not_raise(
    access: tuple[logging.Logger, io.StringIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    logger, stream = access
    _only(logger, stream, monkeypatch)
    stream.close()
    monkeypatch.setattr(logging, "raiseExceptions", False)
    write_access(logger, "request", FIELDS)  # logged by handleError, not raised
