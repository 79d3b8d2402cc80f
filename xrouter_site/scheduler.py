"""An in-process stand-in for Celery beat, for runs without a broker.

It runs every entry of ``CELERY_BEAT_SCHEDULE`` (health probes, usage
roll-ups, whatever is added there) on its interval, calling the task in this
process the way an eager Celery would. There is one schedule: beat reads the
same setting when a broker is configured.

Where it runs, and why: a thread (a greenlet under gevent) in **each**
gunicorn worker, started from the ``post_worker_init`` hook when
``XROUTER_INPROCESS_SCHEDULER`` is on (``manage.py serve`` turns it on when
``CELERY_BROKER_URL`` is empty). A separate scheduler process would not do:
without Redis each process has its own memory cache, so probe results it
wrote would never reach the workers that route requests. Ticks are aligned
to wall-clock multiples of the interval and each tick of an entry is claimed
with an atomic ``cache.add``:

- with a shared cache (``REDIS_URL`` but no broker), one worker on any host
  runs each tick and the others skip it;
- without one (zero-config), every worker runs every tick for itself, which
  is what the per-process health view needs. Entries must therefore be
  idempotent, as Celery's ``acks_late`` already demands.

Usage (the gunicorn hook)::

    from xrouter_site.scheduler import scheduler_start

    scheduler_start()  # no-op unless XROUTER_INPROCESS_SCHEDULER is on
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections, connection

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    """One periodic task: a Celery task name run every ``interval`` seconds."""

    name: str
    task: str
    interval: float
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def slot(self, now: float) -> int:
        """Return the number of the interval window ``now`` falls in."""
        return int(now // self.interval)


def _interval_seconds(schedule: Any) -> float | None:
    if isinstance(schedule, int | float):
        return float(schedule)
    if isinstance(schedule, timedelta):
        return schedule.total_seconds()
    run_every = getattr(schedule, "run_every", None)  # celery.schedules.schedule
    if isinstance(run_every, timedelta):
        return run_every.total_seconds()
    return None


def schedule_entries(schedule: Mapping[str, Mapping[str, Any]]) -> list[ScheduleEntry]:
    """Turn a ``CELERY_BEAT_SCHEDULE`` dict into entries; skip what cannot run.

    Crontab schedules have no fixed interval and are skipped with an error
    in the log rather than run at a made-up rate.
    """
    entries = []
    for name, spec in schedule.items():
        interval = _interval_seconds(spec.get("schedule"))
        if interval is None or interval <= 0:
            logger.error(
                "scheduler: entry has no positive interval in seconds; not run in-process",
                extra={"entry": name, "schedule": repr(spec.get("schedule"))},
            )
            continue
        entries.append(
            ScheduleEntry(
                name=name,
                task=str(spec["task"]),
                interval=interval,
                args=tuple(spec.get("args") or ()),
                kwargs=dict(spec.get("kwargs") or {}),
            )
        )
    return entries


def run_task(entry: ScheduleEntry) -> None:
    """Run ``entry``'s Celery task in this thread, as an eager call would."""
    from xrouter_site.celery import app

    # Registers every app's tasks (autodiscovery) on first use.
    app.loader.import_default_modules()
    task = app.tasks.get(entry.task)
    if task is None:
        logger.error("scheduler: unknown task", extra={"entry": entry.name, "task": entry.task})
        return
    task.apply(args=entry.args, kwargs=entry.kwargs)


class InProcessScheduler:
    """Run schedule entries on their intervals; one claim per entry and tick.

    ``run`` performs one entry (default :func:`run_task`); tests pass their
    own, and ``run_due`` with a chosen ``now``::

        scheduler = InProcessScheduler(schedule_entries(settings.CELERY_BEAT_SCHEDULE))
        scheduler.run_due(time.time())   # claims and starts what is due
        scheduler.start()                # or: loop in a daemon thread
    """

    def __init__(
        self,
        entries: list[ScheduleEntry],
        *,
        run: Callable[[ScheduleEntry], None] = run_task,
        clock: Callable[[], float] = time.time,
        background: bool = True,
    ) -> None:
        self.entries = entries
        self.run = run
        self.clock = clock
        self.background = background
        now = clock()
        # Like beat, the first run is at the next tick, not at start-up.
        self._last_slot = {entry.name: entry.slot(now) for entry in entries}
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def claim(self, entry: ScheduleEntry, slot: int) -> bool:
        """Return True if this process should run ``entry``'s tick ``slot``."""
        ttl = max(1, math.ceil(entry.interval) + 1)
        try:
            return bool(cache.add(f"scheduler:{entry.name}:{slot}", os.getpid(), ttl))
        except Exception:
            # Running a tick twice beats never running it while Redis is down.
            logger.warning("scheduler: cache unavailable for the tick claim", exc_info=True)
            return True

    def run_due(self, now: float) -> list[str]:
        """Start every entry whose next tick has come and that this process claims."""
        started = []
        for entry in self.entries:
            slot = entry.slot(now)
            if slot <= self._last_slot[entry.name]:
                continue
            self._last_slot[entry.name] = slot
            with self._lock:
                if entry.name in self._running:
                    # The previous run is still going: skip, never pile up.
                    logger.warning(
                        "scheduler: previous run still going", extra={"entry": entry.name}
                    )
                    continue
            if not self.claim(entry, slot):
                continue
            with self._lock:
                self._running.add(entry.name)
            started.append(entry.name)
            if self.background:
                threading.Thread(
                    target=self._run_one, args=(entry,), name=f"scheduled-{entry.name}", daemon=True
                ).start()
            else:
                self._run_one(entry)
        return started

    def _run_one(self, entry: ScheduleEntry) -> None:
        try:
            close_old_connections()
            self.run(entry)
        except Exception:
            logger.exception("scheduler: task failed", extra={"entry": entry.name})
        finally:
            with self._lock:
                self._running.discard(entry.name)
            # Each run has its own thread, hence its own connection to close.
            connection.close()

    def seconds_to_next_tick(self, now: float) -> float:
        """Return how long to sleep until the earliest next tick."""
        if not self.entries:
            return 60.0
        return max(0.0, min((e.slot(now) + 1) * e.interval - now for e in self.entries))

    def loop(self) -> None:
        """Run due entries until :meth:`stop` is called."""
        while not self._stop.is_set():
            # A small margin so the wake-up lands inside the new window.
            if self._stop.wait(self.seconds_to_next_tick(self.clock()) + 0.005):
                return
            try:
                self.run_due(self.clock())
            except Exception:
                logger.exception("scheduler: tick failed")

    def start(self) -> None:
        """Run :meth:`loop` in a daemon thread."""
        self._thread = threading.Thread(target=self.loop, name="xrouter-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


_scheduler: InProcessScheduler | None = None


def scheduler_start() -> InProcessScheduler | None:
    """Start this process's scheduler if the settings ask for one; once."""
    global _scheduler
    if not settings.XROUTER_INPROCESS_SCHEDULER or _scheduler is not None:
        return _scheduler
    if settings.CELERY_BROKER_URL:
        logger.warning(
            "scheduler: running in-process although a broker is set; "
            "beat may run the same entries (probes stay rate-limited)"
        )
    # The entries run through the Celery app and its task modules: load them
    # now, not inside the first tick (gunicorn workers do not load Celery
    # otherwise; see xrouter_site/__init__.py).
    from xrouter_site.celery import app

    app.loader.import_default_modules()
    _scheduler = InProcessScheduler(schedule_entries(settings.CELERY_BEAT_SCHEDULE))
    _scheduler.start()
    logger.info(
        "in-process scheduler started",
        extra={"entries": [e.name for e in _scheduler.entries], "pid": os.getpid()},
    )
    return _scheduler
