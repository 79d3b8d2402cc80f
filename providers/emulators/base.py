"""Wire-level fake LLM providers ("emulators"): the shared machinery.

An emulator is a small gevent WSGI server that speaks one provider's HTTP
wire format closely enough that the real client code (our gateway, the
official SDKs) cannot tell it from the real thing, while letting tests inject
latency and faults.  Requests, responses and routing are werkzeug's; this
module adds what is particular to emulators: knobs, fault injection, paced
streams and stats.  Nothing here imports Django: the package must run as a
bare subprocess in tests, benchmarks and the zero-config demo.

Writing a new emulator kind
===========================
1. Create ``providers/emulators/<kind>.py`` with a subclass of
   :class:`Emulator` and expose it as the module attribute ``EMULATOR``::

       from dataclasses import dataclass, field

       from providers.emulators.base import (
           Emulator, EmulatorConfig, HTTPError, Request, Response,
           StreamResponse, json_response, sse_response,
       )

       @dataclass
       class AcmeConfig(EmulatorConfig):
           # Extra knobs become CLI flags (--token-ttl-s) and
           # /_emulator/config keys automatically.
           token_ttl_s: int = field(default=1800, metadata={"help": "..."})

       class AcmeEmulator(Emulator):
           kind = "acme"
           config_class = AcmeConfig

           def register_routes(self) -> None:
               self.route("POST", "/api/v1/chat/completions", self.chat)
               # werkzeug rule syntax; parameters arrive as keyword arguments
               self.route("GET", "/api/v1/models/<path:model_id>", self.model)

           def error_payload(self, status, message, *, code=None,
                             param=None, error_type=None) -> object:
               return {"status": status, "message": message}

           def chat(self, request: Request) -> Response | StreamResponse:
               body = request.json_object()   # BadRequestBody -> 400
               if body.get("stream"):
                   return sse_response([{"choices": [...]}, ...])
               return json_response({"choices": [...]})

           def model(self, request: Request, model_id: str) -> Response:
               raise HTTPError(404, f"no model {model_id}")

       EMULATOR = AcmeEmulator

2. Register the kind in ``EMULATORS`` in ``providers/emulators/__init__.py``.

3. Start it with ``python -m providers.emulators <kind> --port N`` or, from
   tests, ``providers.emulators.testing.start_emulator("<kind>")``.

Handlers receive a :class:`Request` (werkzeug's, plus :meth:`Request.json_object`)
and return a werkzeug :class:`Response` (built with :func:`json_response` or
:meth:`Emulator.error`) or a :class:`StreamResponse` (built with
:func:`sse_response`, or directly with pre-framed bytes for non-SSE streams
such as newline-delimited JSON).  The emulator, not the handler, applies
latency, pacing and faults, so every kind gets them for free.  Override
:meth:`Emulator.error_payload` so errors (including injected ``http_<status>``
faults, 404 and 405) use the provider's error shape, and
:meth:`Emulator.malformed_body` / ``StreamResponse.malformed_frame`` if the
default broken JSON does not suit the format.  Handlers raise
:class:`HTTPError` to bail out with a provider-shaped error from deep inside
validation code.

Knobs (:class:`EmulatorConfig`)
===============================
``latency_ms``          delay before the first byte of every provider request.
``stream_tokens``       number of content chunks a stream is split into.
``chunk_interval_ms``   delay between consecutive stream frames.
``fault``               fault applied to provider requests (see below).
``fault_rate``          probability (0..1) that ``fault`` hits a request.
``fault_count``         apply ``fault`` to the next N hits, then reset it to
                        ``none`` (-1 = forever).  Counts faults actually
                        applied, so with ``fault_rate`` < 1 misses are free.
``timeout_s``           how long the ``timeout`` fault stays silent.
``slow_chunk_ms``       per-chunk delay of ``slow`` when ``latency_ms`` is 0.
``seed``                seed of the RNG behind ``fault_rate`` (None = random).
``history_size``        how many recent requests ``/_emulator/stats`` keeps.

Faults (the names are a contract shared with the gateway's tests)
=================================================================
``none``         normal behaviour.
``http_<code>``  respond ``<code>`` (400..599) with a provider-shaped error
                 body; ``http_429`` also sends ``Retry-After: 1``.
``timeout``      accept the request, then send nothing for ``timeout_s``
                 seconds (default 300) so clients hit their read timeout; ends
                 early when the client hangs up; a 504 if anyone waits it out.
``cut``          streams send half of their frames, then the connection is
                 reset (no terminating chunk, no ``[DONE]``); non-stream
                 responses send headers with the full Content-Length and half
                 the body, then reset.
``malformed``    non-stream: 200 with an invalid JSON body; stream: one frame
                 with invalid JSON half-way, the rest of the stream intact.
``slow``         ``latency_ms`` (or ``slow_chunk_ms`` when that is 0) is also
                 slept before every later stream frame; non-stream bodies are
                 written in four pieces with that delay between them.

The ``X-Emulator-Fault: <fault>`` request header overrides the configured
fault for that one request (ignoring ``fault_rate`` and not consuming
``fault_count``).  Body faults (``cut``, ``malformed``, ``slow``) only touch
2xx responses; a request the handler rejects (401, 400) is returned intact.

Control endpoints (never faulted, never counted in stats)
=========================================================
``GET  /_emulator/health``  200 ``{"status": "ok", "kind", "pid"}``.
``GET  /_emulator/config``  current knobs.
``POST /_emulator/config``  partial update with a JSON object; 400 on an
                            unknown key or bad value; returns the new knobs.
``POST /_emulator/reset``   knobs back to their start values, stats zeroed.
``GET  /_emulator/stats``   counters: ``requests_total``,
    ``requests_by_path``, ``requests_by_fault`` (``none`` included),
    ``open_streams``, ``peak_open_streams``, ``streams_started``,
    ``streams_completed``, ``streams_closed_early`` (client went away: the
    WSGI iterable was closed or a write failed before the end), ``streams_cut``
    (the ``cut`` fault), ``open_hangs`` (requests silent in the ``timeout``
    fault), ``hangs_abandoned`` (their client hung up), ``last_request`` and
    ``recent_requests`` (each
    ``{"method", "path", "query", "headers", "json", "fault"}``; header names
    are lower-cased; ``json`` is null and ``body`` holds the text when the
    body was not JSON), ``rss_kb``, ``max_rss_kb``, ``uptime_s``.

Control errors use the emulator's own shape ``{"error": {"message", "field"}}``.
All state is per process: start one emulator process per test module.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import random
import re
import socket
import struct
import sys
import time
import traceback
import typing
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gevent
import orjson
from gevent.pywsgi import WSGIHandler, WSGIServer
from gevent.socket import wait_read
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request as _WerkzeugRequest
from werkzeug.wrappers import Response

__all__ = [
    "SSE_DONE",
    "BadRequestBody",
    "ConfigError",
    "Emulator",
    "EmulatorConfig",
    "HTTPError",
    "Request",
    "Response",
    "Stats",
    "StreamResponse",
    "fault_status",
    "json_response",
    "make_server",
    "parse_fault",
    "raise_nofile_limit",
    "serve",
    "sse_event",
    "sse_response",
]

#: The OpenAI-style stream terminator; other SSE providers use it too.
SSE_DONE = b"data: [DONE]\n\n"

#: Names of the faults that take no argument; ``http_<code>`` is the other form.
SIMPLE_FAULTS = ("none", "timeout", "cut", "malformed", "slow")

#: Body faults only make sense for a response the handler produced.
BODY_FAULTS = ("cut", "malformed", "slow")

#: Request header that overrides the configured fault for a single request.
FAULT_HEADER = "x-emulator-fault"

#: WSGI environ key under which our handler exposes the client socket, so
#: faults can reset the connection and hangs can notice a client leaving.
SOCKET_ENVIRON_KEY = "emulator.socket"

#: Bodies above this are refused; emulators are for tests, not uploads.
MAX_BODY_BYTES = 32 * 1024 * 1024

_HTTP_FAULT_RE = re.compile(r"^http_(\d{3})$")


# --------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------


def parse_fault(value: str) -> str:
    """Return the canonical fault name for ``value`` or raise ``ValueError``.

    Accepted: ``none``, ``timeout``, ``cut``, ``malformed``, ``slow`` and
    ``http_<code>`` with ``<code>`` in 400..599 (case-insensitive).
    """
    name = value.strip().lower()
    if name in SIMPLE_FAULTS:
        return name
    match = _HTTP_FAULT_RE.match(name)
    if match and 400 <= int(match.group(1)) <= 599:
        return name
    raise ValueError(
        f"unknown fault {value!r}; expected one of {', '.join(SIMPLE_FAULTS)} or http_<400..599>"
    )


def fault_status(fault: str) -> int | None:
    """Return the HTTP status of an ``http_<code>`` fault, else ``None``."""
    match = _HTTP_FAULT_RE.match(fault)
    return int(match.group(1)) if match else None


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------


class ConfigError(ValueError):
    """A knob value was rejected; ``field`` names the offending knob."""

    def __init__(self, message: str, field_name: str | None = None) -> None:
        """Store the message and the name of the rejected knob."""
        super().__init__(message)
        self.field = field_name


@dataclass
class EmulatorConfig:
    """Runtime knobs shared by every emulator kind.

    Subclasses add provider-specific knobs as further dataclass fields (with
    defaults); each field becomes a CLI flag and a ``/_emulator/config`` key.
    Supported field types: ``int``, ``float``, ``str``, ``bool`` and their
    ``| None`` variants.  Put a ``"help"`` entry in the field metadata.
    """

    latency_ms: int = field(
        default=0, metadata={"help": "delay before the first byte of each request"}
    )
    stream_tokens: int = field(
        default=20, metadata={"help": "number of content chunks in a stream"}
    )
    chunk_interval_ms: int = field(
        default=50, metadata={"help": "delay between consecutive stream frames"}
    )
    fault: str = field(
        default="none",
        metadata={"help": "fault to inject: none|timeout|cut|malformed|slow|http_<code>"},
    )
    fault_rate: float = field(
        default=1.0, metadata={"help": "probability (0..1) that the fault hits a request"}
    )
    fault_count: int = field(
        default=-1,
        metadata={"help": "apply the fault N more times, then clear it (-1 = forever)"},
    )
    timeout_s: float = field(
        default=300.0, metadata={"help": "how long the 'timeout' fault stays silent"}
    )
    slow_chunk_ms: int = field(
        default=200,
        metadata={"help": "per-chunk delay of the 'slow' fault when latency_ms is 0"},
    )
    seed: int | None = field(
        default=None, metadata={"help": "seed of the fault_rate RNG (default: random)"}
    )
    history_size: int = field(
        default=20, metadata={"help": "recent requests kept for /_emulator/stats"}
    )

    def validate(self) -> None:
        """Raise :class:`ConfigError` if a knob is out of range.

        Subclasses extend this (call ``super().validate()``).
        """
        for name in ("latency_ms", "chunk_interval_ms", "slow_chunk_ms"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0", name)
        if self.stream_tokens < 1:
            raise ConfigError("stream_tokens must be >= 1", "stream_tokens")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ConfigError("fault_rate must be within 0..1", "fault_rate")
        if self.fault_count < -1:
            raise ConfigError("fault_count must be >= -1", "fault_count")
        if self.timeout_s < 0:
            raise ConfigError("timeout_s must be >= 0", "timeout_s")
        if not 1 <= self.history_size <= 1000:
            raise ConfigError("history_size must be within 1..1000", "history_size")
        try:
            self.fault = parse_fault(self.fault)
        except ValueError as exc:
            raise ConfigError(str(exc), "fault") from None

    def as_dict(self) -> dict[str, Any]:
        """Return the knobs as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def field_types(cls) -> dict[str, tuple[type, bool]]:
        """Map each knob to ``(base type, optional)`` for coercion and the CLI."""
        hints = typing.get_type_hints(cls)
        result: dict[str, tuple[type, bool]] = {}
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            optional = len(args) != len(typing.get_args(hint))
            base = args[0] if args else hint
            if base not in (int, float, str, bool):
                raise TypeError(f"unsupported knob type for {cls.__name__}.{f.name}: {hint}")
            result[f.name] = (base, optional)
        return result

    def updated(self, changes: Mapping[str, object]) -> EmulatorConfig:
        """Return a validated copy with ``changes`` (JSON values) applied."""
        types = self.field_types()
        coerced: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in types:
                raise ConfigError(f"unknown knob {name!r}", name)
            coerced[name] = _coerce(name, value, *types[name])
        new = dataclasses.replace(self, **coerced)
        new.validate()
        return new


def _coerce(name: str, value: object, base: type, optional: bool) -> object:
    """Check a JSON value against a knob type, converting int to float."""
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{name} must not be null", name)
    # bool is an int subclass; a JSON true must not become latency_ms=1.
    if base is bool:
        if isinstance(value, bool):
            return value
    elif base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif base is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif base is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{name} must be of type {base.__name__}", name)


# --------------------------------------------------------------------------
# Requests and responses (werkzeug's, plus what emulators need on top)
# --------------------------------------------------------------------------


class BadRequestBody(ValueError):
    """The request body is not valid JSON (or not the expected JSON type)."""


class HTTPError(Exception):
    """Raised by handlers to answer with a provider-shaped error."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        error_type: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Capture everything :meth:`Emulator.error` needs."""
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.error_type = error_type
        self.headers = list(headers)


_UNSET: Any = object()


class Request(_WerkzeugRequest):
    """werkzeug's request with an orjson body parser that never answers by itself.

    werkzeug's own ``get_json`` raises its generic 400 page; emulators must
    answer in the provider's error shape, so parsing failures surface as
    :class:`BadRequestBody` for the emulator to translate.
    """

    max_content_length = MAX_BODY_BYTES
    _parsed: Any = _UNSET

    def json_payload(self) -> Any:
        """Return the parsed JSON body; raise :class:`BadRequestBody` if invalid."""
        if self._parsed is _UNSET:
            data = self.get_data()
            if not data:
                raise BadRequestBody("empty request body; expected JSON")
            try:
                self._parsed = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise BadRequestBody(f"invalid JSON body: {exc}") from None
        return self._parsed

    def json_object(self) -> dict[str, Any]:
        """Return the JSON body, insisting that it is an object."""
        data = self.json_payload()
        if not isinstance(data, dict):
            raise BadRequestBody("request body must be a JSON object")
        return data


def status_line(status: int) -> str:
    """Return ``"429 Too Many Requests"``: werkzeug's default upper-cases the reason."""
    return f"{status} {HTTP_STATUS_CODES.get(status, 'Unknown')}"


@dataclass
class StreamResponse:
    """A paced stream of pre-framed chunks (one HTTP chunk per frame).

    ``frames`` are written one by one with ``chunk_interval_ms`` between them;
    ``terminator`` (if any) follows the last frame without extra delay.
    ``malformed_frame`` is what the ``malformed`` fault injects half-way.
    """

    frames: Sequence[bytes]
    terminator: bytes | None = SSE_DONE
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "text/event-stream; charset=utf-8"
    malformed_frame: bytes = b'data: {"id": "malformed", "choices": [{"delta": \n\n'


def json_response(
    payload: object, status: int = 200, headers: Sequence[tuple[str, str]] = ()
) -> Response:
    """Serialise ``payload`` with orjson into a JSON response."""
    return Response(
        orjson.dumps(payload),
        status=status_line(status),
        headers=list(headers),
        content_type="application/json",
    )


def sse_event(payload: object) -> bytes:
    """Frame one JSON payload as an SSE ``data:`` event."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def sse_response(
    payloads: Iterable[object],
    *,
    terminator: bytes | None = SSE_DONE,
    headers: Sequence[tuple[str, str]] = (),
) -> StreamResponse:
    """Build an SSE stream of JSON payloads, ending with ``terminator``."""
    return StreamResponse(
        frames=[sse_event(p) for p in payloads], terminator=terminator, headers=list(headers)
    )


#: A route handler: the request plus the rule's parameters as keyword arguments.
Handler = Callable[..., "Response | StreamResponse"]


@dataclass(frozen=True)
class _Endpoint:
    """What a werkzeug rule points at: the handler and whether it is a control route."""

    handler: Handler
    control: bool


# --------------------------------------------------------------------------
# Stats
# --------------------------------------------------------------------------


class Stats:
    """Per-process counters exposed at ``/_emulator/stats``.

    ``generation`` increments on reset so streams that started before a reset
    do not leak their completion into the fresh counters; ``open_streams`` and
    ``open_hangs`` are live gauges and therefore survive resets.
    """

    def __init__(self, history_size: int) -> None:
        """Create zeroed counters."""
        self.started_at = time.monotonic()
        self.generation = 0
        self.open_streams = 0
        self.open_hangs = 0
        self.reset(history_size)

    def reset(self, history_size: int) -> None:
        """Zero every counter except the live ``open_streams`` gauge."""
        self.generation += 1
        self.requests_total = 0
        self.requests_by_path: Counter[str] = Counter()
        self.requests_by_fault: Counter[str] = Counter()
        self.peak_open_streams = self.open_streams
        self.streams_started = 0
        self.streams_completed = 0
        self.streams_closed_early = 0
        self.streams_cut = 0
        self.hangs_abandoned = 0
        self.recent: deque[dict[str, Any]] = deque(maxlen=history_size)

    def record_request(self, request: Request, fault: str) -> None:
        """Count a provider request and remember what the client sent."""
        self.requests_total += 1
        self.requests_by_path[request.path] += 1
        self.requests_by_fault[fault] += 1
        entry: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "query": request.query_string.decode("latin-1"),
            "headers": {name.lower(): value for name, value in request.headers.items()},
            "json": None,
            "fault": fault,
        }
        body = request.get_data()
        if body:
            try:
                entry["json"] = request.json_payload()
            except BadRequestBody:
                entry["body"] = body[:10_000].decode("utf-8", "replace")
        self.recent.append(entry)

    def stream_opened(self) -> int:
        """Account a new stream; return the generation it belongs to."""
        self.open_streams += 1
        self.streams_started += 1
        self.peak_open_streams = max(self.peak_open_streams, self.open_streams)
        return self.generation

    def stream_finished(self, generation: int, outcome: str) -> None:
        """Account a finished stream: ``completed``, ``closed_early`` or ``cut``."""
        self.open_streams -= 1
        if generation != self.generation:
            return
        if outcome == "completed":
            self.streams_completed += 1
        elif outcome == "cut":
            self.streams_cut += 1
        else:
            self.streams_closed_early += 1

    def hang_started(self) -> int:
        """Account a request entering the ``timeout`` fault; return its generation."""
        self.open_hangs += 1
        return self.generation

    def hang_finished(self, generation: int, abandoned: bool) -> None:
        """Account the end of a ``timeout`` hang (``abandoned``: client left)."""
        self.open_hangs -= 1
        if abandoned and generation == self.generation:
            self.hangs_abandoned += 1

    def snapshot(self) -> dict[str, Any]:
        """Return the counters as a JSON-ready dict."""
        recent = list(self.recent)
        rss_kb, max_rss_kb = _memory_kb()
        return {
            "requests_total": self.requests_total,
            "requests_by_path": dict(self.requests_by_path),
            "requests_by_fault": dict(self.requests_by_fault),
            "open_streams": self.open_streams,
            "peak_open_streams": self.peak_open_streams,
            "streams_started": self.streams_started,
            "streams_completed": self.streams_completed,
            "streams_closed_early": self.streams_closed_early,
            "streams_cut": self.streams_cut,
            "open_hangs": self.open_hangs,
            "hangs_abandoned": self.hangs_abandoned,
            "last_request": recent[-1] if recent else None,
            "recent_requests": recent,
            "rss_kb": rss_kb,
            "max_rss_kb": max_rss_kb,
            "uptime_s": round(time.monotonic() - self.started_at, 3),
        }


def _memory_kb() -> tuple[int | None, int | None]:
    """Return (current RSS, peak RSS) of this process in KiB, where known."""
    rss: int | None = None
    peak: int | None = None
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1])
    except OSError:
        pass
    if peak is None:
        try:
            import resource

            # ru_maxrss is KiB on Linux; only a fallback where /proc is absent.
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        except (ImportError, OSError):
            pass
    return rss, peak


# --------------------------------------------------------------------------
# Response bodies (WSGI iterables) that implement pacing and faults
# --------------------------------------------------------------------------


class _HangTimedOut(Exception):
    """Internal: the ``timeout`` fault waited its full duration."""


def _reset_connection(sock: socket.socket | None, reason: str) -> typing.NoReturn:
    """Make the server drop the connection with a TCP reset.

    SO_LINGER 0 turns the eventual close into an RST, and raising ECONNRESET
    makes pywsgi abandon the response silently (it treats that errno as a
    vanished client) without writing the terminating zero-length chunk.
    """
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    raise ConnectionResetError(errno.ECONNRESET, reason)


def _client_gone(sock: socket.socket | None, timeout: float) -> bool:
    """Wait up to ``timeout`` s; return True as soon as the client hangs up."""
    if sock is None:
        gevent.sleep(timeout)
        return False
    try:
        wait_read(sock.fileno(), timeout=timeout, timeout_exc=_HangTimedOut())
    except _HangTimedOut:
        return False
    except OSError:
        return True
    try:
        # The body was read in full already, so readable means EOF or reset.
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class _StreamBody:
    """WSGI iterable for a :class:`StreamResponse` with stream accounting.

    pywsgi calls :meth:`close` when the response ends for any reason, which
    is how a client that left early (write failed, or never read) is seen.
    """

    def __init__(
        self,
        stats: Stats,
        response: StreamResponse,
        *,
        interval_s: float,
        extra_s: float,
        fault: str,
        sock: socket.socket | None,
    ) -> None:
        """Register the stream as open and remember how to pace it."""
        self._stats = stats
        self._response = response
        self._interval_s = interval_s
        self._extra_s = extra_s
        self._fault = fault
        self._sock = sock
        self._outcome: str | None = None
        self._generation = stats.stream_opened()
        self._gen: Iterator[bytes] | None = None

    def __iter__(self) -> Iterator[bytes]:
        """Return the paced frame generator."""
        self._gen = self._frames()
        return self._gen

    def _frames(self) -> Iterator[bytes]:
        frames = self._response.frames
        half = max(1, len(frames) // 2)
        for index, frame in enumerate(frames):
            if index:
                delay = self._interval_s + self._extra_s
                if delay:
                    gevent.sleep(delay)
            if index == half:
                if self._fault == "cut":
                    self._finish("cut")
                    _reset_connection(self._sock, "emulator fault: cut")
                if self._fault == "malformed":
                    yield self._response.malformed_frame
            yield frame
        if self._fault == "cut":
            # Streams with a single frame still must not finish cleanly.
            self._finish("cut")
            _reset_connection(self._sock, "emulator fault: cut")
        if self._response.terminator:
            yield self._response.terminator
        self._finish("completed")

    def _finish(self, outcome: str) -> None:
        if self._outcome is None:
            self._outcome = outcome
            self._stats.stream_finished(self._generation, outcome)

    def close(self) -> None:
        """Called by the server at the end; unfinished means the client left."""
        self._finish("closed_early")
        if self._gen is not None:
            close = getattr(self._gen, "close", None)
            if close is not None:
                close()


def _hang_body(
    stats: Stats, sock: socket.socket | None, timeout_s: float, on_timeout: bytes
) -> Iterator[bytes]:
    """Say nothing for ``timeout_s`` (until the client leaves), then ``on_timeout``.

    Headers are only sent with the first non-empty write, so the client sees
    an accepted connection and total silence.
    """
    generation = stats.hang_started()
    deadline = time.monotonic() + timeout_s
    abandoned = False
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if _client_gone(sock, remaining):
                abandoned = True
                # Abandon quietly rather than writing headers into a dead socket.
                _reset_connection(None, "client left during timeout fault")
    finally:
        stats.hang_finished(generation, abandoned)
    yield on_timeout


def _cut_body(sock: socket.socket | None, body: bytes) -> Iterator[bytes]:
    """Send the first half of ``body``, then reset the connection."""
    yield body[: max(1, len(body) // 2)]
    _reset_connection(sock, "emulator fault: cut")


def _slow_body(body: bytes, delay_s: float, pieces: int = 4) -> Iterator[bytes]:
    """Write ``body`` in ``pieces`` parts with ``delay_s`` before each later part."""
    size = max(1, -(-len(body) // pieces))
    for index, start in enumerate(range(0, len(body), size)):
        if index:
            gevent.sleep(delay_s)
        yield body[start : start + size]


# --------------------------------------------------------------------------
# The emulator application
# --------------------------------------------------------------------------


class Emulator:
    """Base WSGI application: knobs, stats and fault injection around werkzeug routing.

    Subclasses set :attr:`kind`, optionally :attr:`config_class`, implement
    :meth:`register_routes` and override :meth:`error_payload`.
    """

    kind: ClassVar[str] = "base"
    config_class: ClassVar[type[EmulatorConfig]] = EmulatorConfig

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        """Create the app with start-up knobs (defaults when omitted)."""
        initial = config if config is not None else self.config_class()
        initial.validate()
        self.initial_config = dataclasses.replace(initial)
        self.config = dataclasses.replace(initial)
        self.stats = Stats(self.config.history_size)
        self.rng = random.Random(self.config.seed)
        # Exact paths only: no slash merging or trailing-slash redirects,
        # which no provider does either.
        self.url_map = Map(strict_slashes=False, merge_slashes=False)
        self.route("GET", "/_emulator/health", self._health, control=True)
        self.route("GET", "/_emulator/stats", self._get_stats, control=True)
        self.route("GET", "/_emulator/config", self._get_config, control=True)
        self.route("POST", "/_emulator/config", self._set_config, control=True)
        self.route("POST", "/_emulator/reset", self._reset, control=True)
        self.register_routes()
        # One adapter for the process: binding per request would redo host
        # and scheme work that an emulator never varies on.
        self._urls = self.url_map.bind("emulator")

    def route(self, method: str, rule: str, handler: Handler, *, control: bool = False) -> None:
        """Serve ``method`` on the werkzeug ``rule`` with ``handler``.

        Control routes are neither faulted, delayed nor counted in the stats.
        """
        self.url_map.add(Rule(rule, methods=[method], endpoint=_Endpoint(handler, control)))

    # ---- hooks for subclasses -------------------------------------------

    def register_routes(self) -> None:
        """Add the provider's routes with :meth:`route`."""
        raise NotImplementedError

    def error_payload(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        error_type: str | None = None,
    ) -> object:
        """Return the provider-shaped JSON error body (override per provider)."""
        return {"error": {"message": message, "status": status, "code": code, "param": param}}

    def malformed_body(self) -> bytes:
        """Return the invalid JSON sent by the non-stream ``malformed`` fault."""
        return b'{"id": "malformed", "object": "chat.completion", "choices": [{"index": 0,'

    # ---- helpers for handlers -------------------------------------------

    def error(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        error_type: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> Response:
        """Build a provider-shaped error response."""
        extra = list(headers)
        if status == 429 and not any(k.lower() == "retry-after" for k, _ in extra):
            extra.append(("Retry-After", "1"))
        payload = self.error_payload(status, message, code=code, param=param, error_type=error_type)
        return json_response(payload, status, extra)

    # ---- control endpoints ----------------------------------------------

    def _health(self, request: Request) -> Response:
        return json_response({"status": "ok", "kind": self.kind, "pid": os.getpid()})

    def _get_stats(self, request: Request) -> Response:
        return json_response(self.stats.snapshot())

    def _get_config(self, request: Request) -> Response:
        return json_response(self.config.as_dict())

    def _set_config(self, request: Request) -> Response:
        try:
            changes = request.json_object()
            new = self.config.updated(changes)
        except BadRequestBody as exc:
            return _control_error(str(exc), None)
        except ConfigError as exc:
            return _control_error(str(exc), exc.field)
        if new.seed != self.config.seed:
            self.rng.seed(new.seed)
        if new.history_size != self.config.history_size:
            self.stats.recent = deque(self.stats.recent, maxlen=new.history_size)
        self.config = new
        return json_response(self.config.as_dict())

    def _reset(self, request: Request) -> Response:
        self.config = dataclasses.replace(self.initial_config)
        self.rng.seed(self.config.seed)
        self.stats.reset(self.config.history_size)
        return json_response({"status": "reset", "config": self.config.as_dict()})

    # ---- fault selection ----------------------------------------------

    def _choose_fault(self, request: Request) -> str:
        """Pick the fault for this request (header first, then the knobs)."""
        override = request.headers.get(FAULT_HEADER)
        if override:
            # Invalid header values raise ValueError; the caller answers 400.
            return parse_fault(override)
        cfg = self.config
        if cfg.fault == "none" or cfg.fault_count == 0:
            return "none"
        if cfg.fault_rate < 1.0 and self.rng.random() >= cfg.fault_rate:
            return "none"
        fault = cfg.fault
        if cfg.fault_count > 0:
            cfg.fault_count -= 1
            if cfg.fault_count == 0:
                cfg.fault = "none"
                cfg.fault_count = -1
        return fault

    # ---- WSGI ------------------------------------------------------------

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        """Serve one request (the WSGI entry point)."""
        response: Iterable[bytes] = self.dispatch(Request(environ))(environ, start_response)
        return response

    def dispatch(self, request: Request) -> Response:
        """Route ``request`` and apply latency and faults to the handler's answer."""
        try:
            # Read the whole body now: the stats record it even for 404s.
            request.get_data()
        except HTTPException:
            return self.error(413, "request body too large")
        try:
            endpoint, params = self._urls.match(request.path, request.method)
        except MethodNotAllowed as exc:
            self.stats.record_request(request, "none")
            return self.error(
                405,
                f"Method {request.method} not allowed for {request.path}",
                headers=[("Allow", ", ".join(sorted(exc.valid_methods or ())))],
                error_type="invalid_request_error",
            )
        except HTTPException:
            # A client calling a wrong URL is exactly what tests want to see.
            self.stats.record_request(request, "none")
            return self.error(
                404,
                f"Invalid URL ({request.method} {request.path})",
                error_type="invalid_request_error",
            )
        if endpoint.control:
            return self._respond(self._run_handler(endpoint.handler, request, params))

        try:
            fault = self._choose_fault(request)
        except ValueError as exc:
            self.stats.record_request(request, "invalid")
            return self.error(400, str(exc))
        self.stats.record_request(request, fault)
        cfg = self.config

        if fault == "timeout":
            timeout_body = self.error(504, "emulated upstream timeout (fault timeout)").get_data()
            hang = _hang_body(self.stats, _socket(request), cfg.timeout_s, timeout_body)
            return Response(
                hang,
                status=status_line(504),
                content_type="application/json",
                direct_passthrough=True,
            )

        if cfg.latency_ms:
            gevent.sleep(cfg.latency_ms / 1000.0)

        status = fault_status(fault)
        if status is not None:
            return self.error(status, f"emulated upstream error (fault {fault})")

        result = self._run_handler(endpoint.handler, request, params)
        slow_s = (cfg.latency_ms or cfg.slow_chunk_ms) / 1000.0
        if isinstance(result, StreamResponse):
            if result.status >= 300:
                fault = "none"
            body = _StreamBody(
                self.stats,
                result,
                interval_s=cfg.chunk_interval_ms / 1000.0,
                extra_s=slow_s if fault == "slow" else 0.0,
                fault=fault,
                sock=_socket(request),
            )
            return Response(
                body,
                status=status_line(result.status),
                headers=[("Cache-Control", "no-cache"), *result.headers],
                content_type=result.content_type,
                direct_passthrough=True,
            )
        if result.status_code >= 300 or fault not in BODY_FAULTS:
            return result
        if fault == "malformed":
            result.set_data(self.malformed_body())
            return result
        # The headers keep the full Content-Length of the intact body.
        data = result.get_data()
        paced = _cut_body(_socket(request), data) if fault == "cut" else _slow_body(data, slow_s)
        return Response(
            paced, status=result.status, headers=result.headers, direct_passthrough=True
        )

    def _run_handler(
        self, handler: Handler, request: Request, params: Mapping[str, Any]
    ) -> Response | StreamResponse:
        """Call a handler, turning exceptions into provider-shaped errors."""
        try:
            return handler(request, **params)
        except HTTPError as exc:
            return self.error(
                exc.status,
                exc.message,
                code=exc.code,
                param=exc.param,
                error_type=exc.error_type,
                headers=exc.headers,
            )
        except BadRequestBody as exc:
            return self.error(400, str(exc), error_type="invalid_request_error")
        except Exception:  # noqa: BLE001 - a handler bug must show, not kill the server
            traceback.print_exc(file=sys.stderr)
            return self.error(500, "emulator handler crashed", error_type="server_error")

    @staticmethod
    def _respond(result: Response | StreamResponse) -> Response:
        """Send a control route's answer as it is (a stream unpaced)."""
        if isinstance(result, Response):
            return result
        tail = [result.terminator] if result.terminator else []
        return Response(
            [*result.frames, *tail],
            status=status_line(result.status),
            headers=result.headers,
            content_type=result.content_type,
        )


def _socket(request: Request) -> socket.socket | None:
    sock: socket.socket | None = request.environ.get(SOCKET_ENVIRON_KEY)
    return sock


def _control_error(message: str, field_name: str | None) -> Response:
    return json_response({"error": {"message": message, "field": field_name}}, 400)


# --------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------


class _Handler(WSGIHandler):  # type: ignore[misc]
    """pywsgi handler that exposes the client socket to the application."""

    def get_environ(self) -> dict[str, Any]:
        """Add the socket so faults can reset it and hangs can watch it."""
        env: dict[str, Any] = super().get_environ()
        env[SOCKET_ENVIRON_KEY] = self.socket
        return env


def raise_nofile_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return (soft, hard).

    Thousands of concurrent streams need thousands of descriptors and the
    usual soft default (1024) is far too low.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - non-Unix
        return (-1, -1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft, hard


def make_server(
    app: Emulator,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    backlog: int = 4096,
    access_log: bool = False,
) -> WSGIServer:
    """Create (not start) the gevent server for ``app``.

    One greenlet per connection from an unbounded spawn, so the connection
    count is bounded by descriptors and memory, not by a pool size.
    """
    return WSGIServer(
        (host, port),
        app,
        backlog=backlog,
        spawn="default",
        log=sys.stderr if access_log else None,
        error_log=sys.stderr,
        handler_class=_Handler,
    )


def serve(
    app: Emulator,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    backlog: int = 4096,
    access_log: bool = False,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Bind, announce the URL via ``ready`` and serve until interrupted."""
    raise_nofile_limit()
    server = make_server(app, host, port, backlog=backlog, access_log=access_log)
    server.start()
    bound_host = f"[{host}]" if ":" in host else host
    url = f"http://{bound_host}:{server.server_port}"
    if ready is not None:
        ready(url)
    try:
        server.serve_forever()
    finally:
        server.stop(timeout=1)
