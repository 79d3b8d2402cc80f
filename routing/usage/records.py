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
- **Without Redis** (zero-config), or when an ``XADD`` fails: a bounded
  in-process buffer flushed at least every second. A full buffer drops the
  record, counts it in ``xrouter_usage_dropped_total`` and logs an error; a
  killed worker loses what it buffered since the last flush (at most one
  flush interval).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import orjson
from django.conf import settings
from django.db import close_old_connections, connection, transaction

from routing.models import UsageRecord
from xrouter_site.batching import GroupCommit, PeriodicFlusher
from xrouter_site.state import on_reset

logger = logging.getLogger(__name__)

STREAM_KEY = "xr:usage"
GROUP = "usage-writers"


@dataclass(slots=True)
class UsageEvent:
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

    def to_bytes(self) -> bytes:
        # orjson serialises dataclasses natively, without asdict's deep copy.
        return orjson.dumps(self)

    @classmethod
    def from_bytes(cls, raw: bytes) -> UsageEvent:
        # Fields a newer worker added are dropped rather than fatal, so a
        # rolling deploy can mix versions on one stream.
        data = orjson.loads(raw)
        return cls(**{k: v for k, v in data.items() if k in _EVENT_FIELDS})


_EVENT_FIELDS = frozenset(f.name for f in dataclasses.fields(UsageEvent))


def write_events(events: list[UsageEvent]) -> int:
    """Insert ``events``; a request id already stored is skipped, not doubled."""

    if not events:
        return 0
    if connection.vendor == "postgresql":
        written = _insert_postgres(events)
    else:
        written = _insert_orm(events)
    try:
        from routing import metrics

        metrics.USAGE_WRITTEN.inc(written)
    except Exception:
        logger.debug("metrics unavailable", exc_info=True)
    return written


# Columns written by _insert_postgres, in order.
_COLUMNS = (
    "request_id",
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
)


def _insert_postgres(events: list[UsageEvent]) -> int:
    """One multi-row INSERT ... ON CONFLICT DO NOTHING, without model instances.

    The consumer runs inside the gateway workers, so building a Django model
    per row (bulk_create) would tax the request path; execute_values sends
    the same statement for a fraction of the CPU.
    """
    from psycopg2.extras import execute_values

    rows = [
        (
            e.request_id,
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
            e.finish_reason,
        )
        for e in events
    ]
    table = UsageRecord._meta.db_table
    sql = (
        f'INSERT INTO "{table}" ({", ".join(_COLUMNS)}) VALUES %s '  # noqa: S608 (fixed names)
        "ON CONFLICT (request_id) DO NOTHING"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        execute_values(cursor.cursor, sql, rows, page_size=500)
    return len(rows)


def _insert_orm(events: list[UsageEvent]) -> int:
    rows = [
        UsageRecord(
            request_id=e.request_id,
            created_at=datetime.fromtimestamp(e.created, UTC),
            team_id=e.team_id,
            key_id=e.key_id,
            oauth_app=e.oauth_app,
            endpoint=e.endpoint,
            requested_model=e.requested_model[:200],
            served_model=e.served_model,
            model_version=e.model_version[:100],
            provider=e.provider,
            deployment_id=e.deployment_id,
            attempts=e.attempts,
            prompt_tokens=e.prompt_tokens,
            completion_tokens=e.completion_tokens,
            cached_tokens=e.cached_tokens,
            cost_rub=Decimal(e.cost_rub),
            status=e.status,
            error_code=e.error_code,
            latency_ms=round(e.latency_ms),
            ttft_ms=round(e.ttft_ms) if e.ttft_ms is not None else None,
            stream=e.stream,
            stream_complete=e.stream_complete,
            finish_reason=e.finish_reason,
        )
        for e in events
    ]
    UsageRecord.objects.bulk_create(rows, ignore_conflicts=True, batch_size=500)
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
        self._committer: GroupCommit[bytes] | None = None
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
        self._committer.submit(event.to_bytes())
        if self._thread is None and settings.XROUTER_USAGE_CONSUMER:
            self._start()

    def _write_batch(self, payloads: list[bytes]) -> None:
        pipe = self.client.pipeline(transaction=False)
        maxlen = settings.XROUTER_USAGE_STREAM_MAXLEN
        for payload in payloads:
            pipe.xadd(STREAM_KEY, {"e": payload}, maxlen=maxlen, approximate=True)
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
                    events.append(UsageEvent.from_bytes(fields[b"e"]))
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
                "usage stream unavailable; buffering in process",
                extra={"request_id": event.request_id},
                exc_info=True,
            )
    try:
        local_buffer().add(event)
    except Exception:
        logger.exception("usage record lost", extra={"request_id": event.request_id})


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
