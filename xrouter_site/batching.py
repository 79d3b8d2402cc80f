"""Batching off the request path: one group-commit writer, one periodic flusher.

:class:`GroupCommit` hands items to one writer thread (a greenlet under
gevent) that takes everything queued and processes it in one call: at low
load a batch is one item and costs a direct call, under load one round trip
carries many. A submitter either waits for its own item's result
(:meth:`GroupCommit.submit`) or does not (:meth:`GroupCommit.send`).
:class:`PeriodicFlusher` calls a function every few seconds.

Threads do not survive ``fork``: owners compare :attr:`GroupCommit.pid`
with ``os.getpid()`` and build a new one in a child.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class _Ticket:
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class GroupCommit(Generic[T]):
    """Process queued items in batches with ``write(items)``, from one thread.

    ``write`` returns one result per item, in order, or None when items have
    no result. If it raises, every waiting submitter of that batch gets the
    exception; items that were only sent are logged as lost.
    """

    def __init__(
        self,
        name: str,
        write: Callable[[list[T]], Sequence[Any] | None],
        *,
        timeout: float = 1.0,
        timeout_message: str = "the batch writer did not answer in time",
    ) -> None:
        self.pid = os.getpid()
        self.name = name
        self._write = write
        self._timeout = timeout
        self._timeout_message = timeout_message
        self._cond = threading.Condition()
        self._queue: list[tuple[T, _Ticket | None]] = []
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> Any:
        """Queue ``item`` and wait for its result; raise the writer's error."""
        ticket = _Ticket()
        self._enqueue(item, ticket)
        if not ticket.done.wait(self._timeout):
            raise TimeoutError(self._timeout_message)
        if ticket.error is not None:
            raise ticket.error
        return ticket.value

    def send(self, item: T) -> None:
        """Queue ``item`` and return at once; nobody waits for it."""
        self._enqueue(item, None)

    def _enqueue(self, item: T, ticket: _Ticket | None) -> None:
        with self._cond:
            self._queue.append((item, ticket))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                batch, self._queue = self._queue, []
            error: BaseException | None = None
            results: Sequence[Any] | None = None
            try:
                results = self._write([item for item, _ticket in batch])
            except Exception as exc:  # handed to every submitter of the batch
                error = exc
                if any(ticket is None for _item, ticket in batch):
                    logger.warning("%s: a batch failed", self.name, exc_info=True)
            for i, (_item, ticket) in enumerate(batch):
                if ticket is None:
                    continue
                ticket.error = error
                ticket.value = results[i] if results is not None else None
                ticket.done.set()


class PeriodicFlusher:
    """Call ``flush()`` every ``interval()`` seconds from one daemon thread.

    A failing flush is logged and retried at the next tick; ``interval`` is
    read at each tick, so settings changed at run time apply.
    """

    def __init__(self, name: str, flush: Callable[[], Any], interval: Callable[[], float]) -> None:
        self.name = name
        self._flush = flush
        self._interval = interval
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        """Start the thread unless it runs already (idempotent, thread-safe)."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self._interval())
            try:
                self._flush()
            except Exception:
                logger.warning("%s: flush failed", self.name, exc_info=True)
