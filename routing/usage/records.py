"""Usage records: one per request, written off the hot path, never twice.

The request path hands a finished :class:`UsageEvent` to :func:`record` and
moves on. Where the record goes first depends on the deployment:

- **With Redis**: ``XADD`` to a capped Redis stream before the response is
  returned, so a worker that is killed right after answering has already
  handed its record over. Every worker runs a consumer (a background
  greenlet) in one consumer group: it reads batches, bulk-inserts them with
  ``ON CONFLICT (request_id) DO NOTHING`` and acknowledges only after the
  commit. Entries a dead worker had read but not acknowledged are claimed
  by another worker after ``XROUTER_USAGE_CLAIM_IDLE_SECONDS``. Delivery is
  at least once; the unique request id makes the insert idempotent.
- **When an ``XADD`` fails or is not confirmed in time** (Redis down, or a
  starved box: the group commit waits 2 s): the record is inserted into
  the database by the request itself before the response goes out, so a
  worker killed right after answering still loses nothing. Should the
  batch still reach Redis later, the consumer's insert of the same request
  id is skipped. Only if that insert fails too does the record go to the
  in-process buffer below.
- **Without Redis** (zero-config): a bounded in-process buffer flushed at
  least every second. A full buffer drops the record, counts it in
  ``xrouter_usage_dropped_total`` and logs an error; a killed worker loses
  what it buffered since the last flush (at most one flush interval).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import secrets
import socket
import string
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import orjson
from django.conf import settings
from django.db import DataError, IntegrityError, close_old_connections, connection, transaction

from providers.base import Usage
from routing.models import UsageRecord
from xrouter_site.batching import GroupCommit, PeriodicFlusher
from xrouter_site.state import on_reset

logger = logging.getLogger(__name__)

STREAM_KEY = "xr:usage"
GROUP = "usage-writers"


_BASE62 = string.digits + string.ascii_letters
# _BASE62_PAIRS[n] for n < 62 * 62: the digits of n, least significant first.
_BASE62_PAIRS = [_BASE62[n % 62] + _BASE62[n // 62] for n in range(62 * 62)]


def new_generation_id() -> str:
    """Return a new gateway-issued request id in OpenRouter's shape.

    ``gen-<unix seconds>-<20 base62 characters>``: 119 random bits from the
    CSPRNG, so ids never collide across teams or workers and no client can
    predict or choose one. It is the response ``id``, the
    ``X-Generation-Id`` header and the unique key of the usage record.
    """
    n = int.from_bytes(secrets.token_bytes(15), "big")
    # Two base62 digits per step (least significant first, as one digit per
    # step would give): 10 divisions instead of 20, 4.0 -> 2.3 us (issue 19).
    chars = []
    for _ in range(10):
        n, rest = divmod(n, 3844)
        chars.append(_BASE62_PAIRS[rest])
    return f"gen-{int(time.time())}-{''.join(chars)}"


def plausible_usage(reported: Usage, *, prompt_cap: int, completion_cap: int) -> tuple[Usage, str]:
    """Return upstream-reported usage clamped to what can be true, and why.

    A provider's count is trusted only within bounds: no field below zero
    or of a non-integer type, prompt tokens at most ``prompt_cap`` (the
    model's context), completion tokens at most ``completion_cap`` (the
    request's ``max_tokens``, else the context), cached tokens at most the
    prompt. The second value is empty when nothing was changed, else a short
    note for the record's ``usage_anomaly``.
    """
    notes: list[str] = []

    def bound(name: str, value: object, cap: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            try:
                number = int(value)  # type: ignore[call-overload]
            except (TypeError, ValueError, OverflowError):
                number = 0
            notes.append(f"{name}={str(value)[:20]!s} not an integer")
        else:
            number = value
        if number < 0:
            notes.append(f"{name}={number} below 0")
            return 0
        if number > cap:
            notes.append(f"{name}={number} above {cap}")
            return cap
        return number

    prompt = bound("prompt_tokens", reported.prompt_tokens, max(prompt_cap, 0))
    completion = bound("completion_tokens", reported.completion_tokens, max(completion_cap, 0))
    cached = bound("cached_tokens", reported.cached_tokens, prompt)
    reasoning = bound("reasoning_tokens", reported.reasoning_tokens, completion)
    billed = reported.billed_prompt_tokens
    if billed is not None:
        billed = bound("billed_prompt_tokens", billed, prompt)
    if not notes:
        return reported, ""
    clamped = dataclasses.replace(
        reported,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        reasoning_tokens=reasoning,
        billed_prompt_tokens=billed,
    )
    return clamped, ("clamped: " + "; ".join(notes))[:200]


@dataclass(slots=True)
class UsageEvent:
    """One finished request, as handed to the writers.

    ``request_id`` is the correlation id (the ``X-Request-ID`` echoed to the
    client); ``generation_id`` is the key. Events queued by an older release
    have no generation id; they keep their request id as the key.
    """

    request_id: str
    created: float
    team_id: int
    key_id: int | None
    endpoint: str
    requested_model: str
    served_model: str = ""
    model_version: str = ""
    provider: str = ""
    deployment_id: int | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_rub: str = "0"
    status: int = 200
    error_code: str = ""
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    stream: bool = False
    stream_complete: bool | None = None
    oauth_app: str = ""
    # OpenAI's finish reason of a served chat ("content_filter" when the
    # provider's filter cut or replaced the answer); "" when none applies.
    finish_reason: str = ""
    # PII guardrail findings as counts by kind (routing/pii/); never values.
    pii_counts: dict[str, int] = field(default_factory=dict)
    generation_id: str = ""
    upstream_id: str = ""
    usage_anomaly: str = ""

    @property
    def key(self) -> str:
        """Return the record's unique key (see the class docstring)."""
        return self.generation_id or self.request_id

    def to_stream_fields(self) -> dict[str, bytes]:
        """Return the event as stream entry fields: ``e`` (base) and ``x`` (the rest).

        Releases from before commit fd90aba (which added ``finish_reason``)
        read only ``e`` and refuse a field they do not know, so ``e``
        carries only :data:`BASE_FIELDS`; every field added since travels in
        ``x``, which those releases never open. An old
        worker that consumes the entry during a rolling deploy writes the
        record without the newer fields instead of dropping it.
        """
        # orjson serialises dataclasses natively, without asdict's deep copy.
        data = orjson.loads(orjson.dumps(self))
        base = {k: v for k, v in data.items() if k in BASE_FIELDS}
        rest = {k: v for k, v in data.items() if k not in BASE_FIELDS}
        return {"e": orjson.dumps(base), "x": orjson.dumps(rest)}

    @classmethod
    def from_stream_fields(cls, fields: dict[bytes, bytes]) -> UsageEvent:
        """Read an entry of any release: ``e``, merged with ``x`` when present."""
        data = orjson.loads(fields[b"e"])
        extension = fields.get(b"x")
        if extension is not None:
            more = orjson.loads(extension)
            if not isinstance(more, dict):
                raise ValueError("the x field of a usage entry is not an object")
            data = {**data, **more}
        return cls._from_dict(data)

    @classmethod
    def _from_dict(cls, data: object) -> UsageEvent:
        # Fields a newer worker added are dropped rather than fatal, so a
        # rolling deploy can mix versions on one stream (forward compatible).
        if not isinstance(data, dict):
            raise ValueError("a usage event is not a JSON object")
        return cls(**{k: v for k, v in data.items() if k in _EVENT_FIELDS})


_EVENT_FIELDS = frozenset(f.name for f in dataclasses.fields(UsageEvent))
#: The fields of the last release whose reader refused unknown fields (before
#: commit fd90aba): only these may go in an entry's ``e`` field. Never
#: add to this set; a new field goes in ``x`` (docs/operations.md, section 8).
BASE_FIELDS = frozenset(
    {
        "request_id",
        "created",
        "team_id",
        "key_id",
        "endpoint",
        "requested_model",
        "served_model",
        "model_version",
        "provider",
        "deployment_id",
        "attempts",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "cost_rub",
        "status",
        "error_code",
        "latency_ms",
        "ttft_ms",
        "stream",
        "stream_complete",
        "oauth_app",
    }
)


def write_events(events: list[UsageEvent]) -> int:
    """Insert ``events``; a key already stored is skipped, not doubled.

    One statement per batch. If the batch is refused for its data (a value
    out of range, a broken row), the rows are retried one by one, each in a
    savepoint, so one bad row costs neither the others nor an endless retry
    of the batch: a row refused again is written once more with every field
    forced into its column's range and flagged in ``usage_anomaly``, and
    only a row refused even then is dropped (logged with its content,
    counted in ``xrouter_usage_dropped_total``). Errors that are not about
    the data (the database is down) propagate, so the caller retries.
    """

    if not events:
        return 0
    rows = [_row(e) for e in events]
    try:
        with transaction.atomic():
            written = _insert(rows)
    except _DATA_ERRORS as exc:
        logger.warning(
            "usage batch refused; writing its rows one by one",
            extra={"rows": len(rows), "error": str(exc)[:200]},
        )
        written = _insert_isolated(rows)
    _metric("USAGE_WRITTEN", "inc", written)
    return written


def _insert_isolated(rows: list[tuple[Any, ...]]) -> int:
    written = 0
    error: BaseException | None = None
    with transaction.atomic():
        for row in rows:
            for attempt in (row, _forced(row)):
                try:
                    with transaction.atomic():
                        _insert([attempt])
                except _DATA_ERRORS as exc:
                    error = exc
                    continue
                written += 1
                if attempt is not row:
                    logger.error(
                        "usage row forced into range",
                        extra={"generation_id": row[_GEN], "error": str(error)[:200]},
                    )
                break
            else:
                logger.error(
                    "usage row dropped: the database refuses it",
                    extra={"row": repr(row)[:2000], "error": str(error)[:200]},
                )
                _metric("USAGE_DROPPED", "inc")
    return written


# Columns written by _insert, in order; _row builds the values.
_COLUMNS = (
    "request_id",
    "generation_id",
    "correlation_id",
    "upstream_id",
    "usage_anomaly",
    "created_at",
    "team_id",
    "key_id",
    "oauth_app",
    "endpoint",
    "requested_model",
    "served_model",
    "model_version",
    "provider",
    "deployment_id",
    "attempts",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_rub",
    "status",
    "error_code",
    "latency_ms",
    "ttft_ms",
    "stream",
    "stream_complete",
    "finish_reason",
    "pii_counts",
)
_GEN = _COLUMNS.index("generation_id")
# A batch refused for these is retried row by row; anything else propagates.
# execute_values runs on the raw psycopg2 cursor, whose errors Django does
# not wrap.
_DATA_ERRORS: tuple[type[BaseException], ...] = (DataError, IntegrityError)
try:
    import psycopg2

    _DATA_ERRORS += (psycopg2.DataError, psycopg2.IntegrityError)
except ImportError:  # SQLite-only installs
    pass
_ANOMALY = _COLUMNS.index("usage_anomaly")
# PostgreSQL "integer" (PositiveIntegerField, PositiveSmallIntegerField's
# neighbours) and the cost column's numeric(16, 6).
_INT_MAX = 2**31 - 1
_COST_MAX = Decimal("9999999999.999999")
_INT_COLUMNS = {
    _COLUMNS.index(name): (0, 32767 if name == "status" else _INT_MAX)
    for name in ("prompt_tokens", "completion_tokens", "cached_tokens", "status", "latency_ms")
}
_TEXT_COLUMNS = {
    _COLUMNS.index(name): size
    for name, size in (
        ("request_id", 128),
        ("correlation_id", 128),
        ("upstream_id", 200),
        ("usage_anomaly", 200),
        ("oauth_app", 100),
        ("endpoint", 32),
        ("requested_model", 200),
        ("served_model", 200),
        ("model_version", 100),
        ("provider", 64),
        ("error_code", 64),
        ("finish_reason", 32),
    )
}


def _row(e: UsageEvent) -> tuple[Any, ...]:
    key = e.key
    return (
        key,  # the legacy unique column carries the key too (migration 0007)
        key,
        e.request_id[:128],
        e.upstream_id[:200],
        e.usage_anomaly[:200],
        datetime.fromtimestamp(e.created, UTC),
        e.team_id,
        e.key_id,
        e.oauth_app,
        e.endpoint,
        e.requested_model[:200],
        e.served_model,
        e.model_version[:100],
        e.provider,
        e.deployment_id,
        orjson.dumps(e.attempts).decode(),
        e.prompt_tokens,
        e.completion_tokens,
        e.cached_tokens,
        Decimal(e.cost_rub),
        e.status,
        e.error_code,
        round(e.latency_ms),
        round(e.ttft_ms) if e.ttft_ms is not None else None,
        e.stream,
        e.stream_complete,
        e.finish_reason[:32],
        orjson.dumps(e.pii_counts).decode(),
    )


def _forced(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Return ``row`` with every value forced into its column, flagged."""
    values = list(row)
    changed = []
    for i, (low, high) in _INT_COLUMNS.items():
        try:
            value = int(values[i])
        except (TypeError, ValueError):
            value = 0
        forced = min(max(value, low), high)
        if forced != values[i]:
            changed.append(_COLUMNS[i])
        values[i] = forced
    ttft = _COLUMNS.index("ttft_ms")
    if values[ttft] is not None and not 0 <= values[ttft] <= _INT_MAX:
        values[ttft] = None
        changed.append("ttft_ms")
    cost = _COLUMNS.index("cost_rub")
    if not Decimal(0) <= values[cost] <= _COST_MAX:
        values[cost] = min(max(values[cost], Decimal(0)), _COST_MAX)
        changed.append("cost_rub")
    for i, size in _TEXT_COLUMNS.items():
        text = str(values[i] or "").replace("\x00", "")[:size]
        if text != values[i]:
            changed.append(_COLUMNS[i])
        values[i] = text
    note = "forced into range: " + ", ".join(changed or ["nothing"])
    values[_ANOMALY] = (f"{values[_ANOMALY]}; {note}" if values[_ANOMALY] else note)[:200]
    return tuple(values)


def _insert(rows: list[tuple[Any, ...]]) -> int:
    """Insert ``rows`` in one statement, skipping keys already stored.

    On PostgreSQL: one multi-row INSERT ... ON CONFLICT DO NOTHING without
    model instances. The consumer runs inside the gateway workers, so
    building a Django model per row (bulk_create) would tax the request
    path; execute_values sends the same statement for a fraction of the CPU.
    """
    if connection.vendor == "postgresql":
        from psycopg2.extras import execute_values

        table = UsageRecord._meta.db_table
        sql = (
            f'INSERT INTO "{table}" ({", ".join(_COLUMNS)}) VALUES %s '  # noqa: S608 (fixed names)
            # request_id holds the generation id too and is the unique index
            # of this release (migration 0007).
            "ON CONFLICT (request_id) DO NOTHING"
        )
        with connection.cursor() as cursor:
            execute_values(cursor.cursor, sql, rows, page_size=500)
        return len(rows)
    records = []
    for row in rows:
        fields = dict(zip(_COLUMNS, row, strict=True))
        fields["attempts"] = orjson.loads(fields["attempts"])
        fields["pii_counts"] = orjson.loads(fields["pii_counts"])
        records.append(UsageRecord(**fields))
    UsageRecord.objects.bulk_create(records, ignore_conflicts=True, batch_size=500)
    return len(rows)


class LocalBuffer:
    """A bounded in-process buffer with a flusher thread."""

    def __init__(self, capacity: int, interval: float) -> None:
        self.capacity = capacity
        self.interval = interval
        self._events: collections.deque[UsageEvent] = collections.deque()
        self._lock = threading.Lock()
        self._flusher = PeriodicFlusher("usage-flush", self._flush_in_thread, lambda: self.interval)
        self.dropped = 0

    def add(self, event: UsageEvent) -> bool:
        with self._lock:
            if len(self._events) >= self.capacity:
                self.dropped += 1
                full = True
            else:
                self._events.append(event)
                full = False
        if full:
            logger.error(
                "usage buffer full: record dropped",
                extra={"request_id": event.request_id, "capacity": self.capacity},
            )
            _metric("USAGE_DROPPED", "inc")
            return False
        _metric("USAGE_BUFFER_DEPTH", "set", len(self._events))
        if not self._flusher.started:
            self._flusher.start()
        return True

    def flush(self) -> int:
        with self._lock:
            batch = list(self._events)
            self._events.clear()
        if not batch:
            return 0
        try:
            written = write_events(batch)
        except Exception:
            # Put the batch back (bounded) so a database blip loses nothing.
            logger.exception("usage flush failed; will retry")
            with self._lock:
                room = self.capacity - len(self._events)
                self._events.extendleft(reversed(batch[:room]))
                self.dropped += max(0, len(batch) - room)
            raise
        _metric("USAGE_BUFFER_DEPTH", "set", len(self._events))
        return written

    def __len__(self) -> int:
        return len(self._events)

    def _flush_in_thread(self) -> None:
        close_old_connections()
        try:
            self.flush()
        except Exception:  # flush() logged it and kept the batch
            logger.debug("usage flush will be retried", exc_info=True)
        finally:
            connection.close()


class StreamSink:
    """Usage via a Redis stream and a consumer group (see module docstring)."""

    def __init__(self, url: str) -> None:
        from xrouter_site import redis_connections

        timeout = settings.XROUTER_LIMITER_TIMEOUT
        # Plain, TLS or redis+sentinel:// (xrouter_site.redis_connections).
        self.client = redis_connections.client(
            url,
            socket_timeout=max(timeout, 0.2),
            socket_connect_timeout=max(timeout, 0.2),
            retry=None,
        )
        self.consumer = f"{socket.gethostname()}-{os.getpid()}"
        self._committer: GroupCommit[dict[str, bytes]] | None = None
        self._thread: threading.Thread | None = None
        self._group_ready = False

    def add(self, event: UsageEvent) -> None:
        """Append ``event`` to the stream; return once Redis has it.

        Concurrent requests share round trips (group commit): each waits
        for the pipelined batch that carries its event, so a response is
        still only sent after its record is in Redis.
        """
        if self._committer is None or self._committer.pid != os.getpid():
            with _lock:
                if self._committer is None or self._committer.pid != os.getpid():
                    self._committer = GroupCommit(
                        "usage-commit",
                        self._write_batch,
                        timeout=2.0,
                        timeout_message="the usage stream did not confirm the record in time",
                    )
        self._committer.submit(event.to_stream_fields())
        if self._thread is None and settings.XROUTER_USAGE_CONSUMER:
            self._start()

    def _write_batch(self, payloads: list[dict[str, bytes]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        maxlen = settings.XROUTER_USAGE_STREAM_MAXLEN
        for payload in payloads:
            pipe.xadd(STREAM_KEY, cast(Any, payload), maxlen=maxlen, approximate=True)
        pipe.execute()

    def _ensure_group(self, client: Any) -> None:
        if self._group_ready:
            return
        import redis

        try:
            client.xgroup_create(STREAM_KEY, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def consume_once(
        self, block_ms: int = 1000, count: int = 500, *, client: Any = None, claim: bool = True
    ) -> int:
        """Read, write and acknowledge one batch (orphans first, then new ones).

        ``claim`` also takes over entries another consumer read but never
        acknowledged (a killed worker) once they are idle long enough.
        """
        import redis

        own_client = client is None
        if own_client:
            client = self._consumer_client()
        try:
            self._ensure_group(client)
            entries: list[tuple[Any, Any]] = []
            if claim:
                idle_ms = int(settings.XROUTER_USAGE_CLAIM_IDLE_SECONDS * 1000)
                _next, claimed, *_rest = client.xautoclaim(
                    STREAM_KEY,
                    GROUP,
                    self.consumer,
                    min_idle_time=idle_ms,
                    start_id="0-0",
                    count=count,
                )
                entries = [(eid, fields) for eid, fields in cast(list[Any], claimed) if fields]
                _metric("USAGE_BUFFER_DEPTH", "set", client.xlen(STREAM_KEY))
            if not entries:
                response = client.xreadgroup(
                    GROUP, self.consumer, {STREAM_KEY: ">"}, count=count, block=block_ms
                )
                entries = [
                    item for _stream, items in cast(list[Any], response or []) for item in items
                ]
            if not entries:
                return 0
            events = []
            for _eid, fields in entries:
                try:
                    events.append(UsageEvent.from_stream_fields(fields))
                except (KeyError, TypeError, ValueError, orjson.JSONDecodeError):
                    logger.error("unreadable usage entry skipped", extra={"entry": str(_eid)})
            write_events(events)
            ids = [eid for eid, _fields in entries]
            pipe = client.pipeline(transaction=False)
            pipe.xack(STREAM_KEY, GROUP, *ids)
            pipe.xdel(STREAM_KEY, *ids)
            pipe.execute()
            return len(events)
        except redis.ResponseError as exc:
            # The stream (and its group) can vanish, e.g. after FLUSHDB or a
            # Redis restart without persistence: recreate on the next call.
            self._group_ready = False
            if "NOGROUP" in str(exc):
                return 0
            raise
        except redis.RedisError:
            self._group_ready = False
            raise
        finally:
            if own_client:
                client.close()

    @staticmethod
    def _consumer_client() -> Any:
        from xrouter_site import redis_connections

        return redis_connections.client(
            settings.XROUTER_USAGE_REDIS_URL, socket_timeout=5, socket_connect_timeout=1
        )

    def _start(self) -> None:
        with _lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="usage-consumer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        """Consume forever in batches that are allowed to fill up.

        The connection to Redis and the database connection are kept; after
        a batch that did not fill up the consumer pauses a little, so under
        load it writes few large batches (one INSERT each) instead of many
        tiny ones. Orphans are claimed every few seconds, not every batch.
        """
        client = self._consumer_client()
        batch = settings.XROUTER_USAGE_BATCH_SIZE
        next_claim = 0.0
        while True:
            try:
                close_old_connections()
                claim = time.monotonic() >= next_claim
                if claim:
                    next_claim = time.monotonic() + _CLAIM_EVERY_SECONDS
                written = self.consume_once(count=batch, client=client, claim=claim)
                if written < batch:
                    time.sleep(settings.XROUTER_USAGE_CONSUME_PAUSE_SECONDS)
            except Exception:
                logger.warning("usage consumer failed; retrying", exc_info=True)
                connection.close()
                client.close()
                client = self._consumer_client()
                time.sleep(1)


# How often a consumer looks for entries a dead consumer left unacknowledged.
_CLAIM_EVERY_SECONDS = 5.0


_lock = threading.Lock()
_local: LocalBuffer | None = None
_stream: StreamSink | None = None


def _metric(name: str, op: str, value: float = 1) -> None:
    try:
        from routing import metrics

        getattr(getattr(metrics, name), op)(value)
    except Exception:
        logger.debug("metrics unavailable", exc_info=True)


def local_buffer() -> LocalBuffer:
    global _local
    if _local is None:
        with _lock:
            if _local is None:
                _local = LocalBuffer(
                    settings.XROUTER_USAGE_BUFFER_SIZE, settings.XROUTER_USAGE_FLUSH_SECONDS
                )
    return _local


def stream_sink() -> StreamSink | None:
    global _stream
    if not settings.XROUTER_USAGE_REDIS_URL:
        return None
    if _stream is None:
        with _lock:
            if _stream is None:
                _stream = StreamSink(settings.XROUTER_USAGE_REDIS_URL)
    return _stream


def record(event: UsageEvent) -> None:
    """Hand ``event`` over for writing; never raises."""
    sink = stream_sink()
    if sink is not None:
        try:
            sink.add(event)
            return
        except Exception:
            logger.warning(
                "usage stream unavailable; writing the record directly",
                extra={"request_id": event.request_id},
                exc_info=True,
            )
            if _write_now(event):
                return
    try:
        local_buffer().add(event)
    except Exception:
        logger.exception("usage record lost", extra={"request_id": event.request_id})


def _write_now(event: UsageEvent) -> bool:
    """Insert ``event`` in the request's own transaction; False if that failed.

    The durable fallback when the Redis stream cannot confirm a record:
    buffering it in process instead would lose it with a killed worker
    (seen under a starved box: 2 of 296 answered requests had no record
    after a SIGKILL). The unique request id makes a late XADD of the same
    event harmless.
    """
    try:
        write_events([event])
    except Exception:
        logger.warning(
            "usage record could not be written directly; buffering in process",
            extra={"request_id": event.request_id},
            exc_info=True,
        )
        return False
    _metric("USAGE_DIRECT_WRITES", "inc")
    return True


def flush_all() -> None:
    """Write everything this process holds (tests, shutdown)."""
    if _local is not None:
        _local.flush()


def reset() -> None:
    """Forget sinks and buffered events (tests)."""
    global _local, _stream
    _local = None
    _stream = None


on_reset("routing.usage.records", reset)
