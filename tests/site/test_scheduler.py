"""The in-process scheduler: beat's schedule without a broker."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from celery.schedules import crontab
from django.conf import settings

from routing import health
from routing.models import Deployment
from tests.conftest import openai_catalog
from xrouter_site import scheduler
from xrouter_site.scheduler import InProcessScheduler, ScheduleEntry, run_task, schedule_entries


def _recorder() -> tuple[list[str], Callable[[ScheduleEntry], None]]:
    ran: list[str] = []
    return ran, lambda entry: ran.append(entry.name)


def test_settings_schedule_is_read_whole() -> None:
    """Every beat entry runs in-process, the health probe on its interval."""
    entries = {e.name: e for e in schedule_entries(settings.CELERY_BEAT_SCHEDULE)}
    assert set(entries) == set(settings.CELERY_BEAT_SCHEDULE)
    probe = entries["deployment-health"]
    assert probe.task == "routing.tasks.probe_all_deployments"
    assert probe.interval == settings.XROUTER_HEALTH_INTERVAL_SECONDS


def test_schedule_forms() -> None:
    """Seconds, timedeltas and celery intervals run; crontabs are refused."""
    entries = schedule_entries(
        {
            "a": {"task": "t.a", "schedule": 5},
            "b": {"task": "t.b", "schedule": timedelta(minutes=1), "args": [1]},
            "c": {"task": "t.c", "schedule": crontab(minute="*/5")},
            "d": {"task": "t.d", "schedule": 0},
        }
    )
    assert [(e.name, e.interval, e.args) for e in entries] == [("a", 5.0, ()), ("b", 60.0, (1,))]


def test_entries_run_once_per_interval(db: None) -> None:
    """An entry runs at each new interval window, not before, not twice."""
    ran, run = _recorder()
    entry = ScheduleEntry(name="every-10", task="t", interval=10)
    scheduler = InProcessScheduler([entry], run=run, clock=lambda: 1000.0, background=False)
    assert scheduler.run_due(1005.0) == []  # first run at the next tick, like beat
    assert scheduler.run_due(1010.01) == ["every-10"]
    assert scheduler.run_due(1019.9) == []
    assert scheduler.run_due(1020.2) == ["every-10"]
    assert ran == ["every-10", "every-10"]
    assert scheduler.seconds_to_next_tick(1025.0) == pytest.approx(5.0)


def test_two_schedulers_run_each_tick_once(db: None) -> None:
    """Schedulers sharing a cache (workers of one gateway) split the ticks."""
    ran, run = _recorder()
    entries = [ScheduleEntry(name="shared", task="t", interval=7)]
    first = InProcessScheduler(entries, run=run, clock=lambda: 700.0, background=False)
    second = InProcessScheduler(entries, run=run, clock=lambda: 700.0, background=False)
    assert first.run_due(707.1) + second.run_due(707.2) == ["shared"]
    assert second.run_due(714.1) + first.run_due(714.3) == ["shared"]
    assert ran == ["shared", "shared"]


def test_a_slow_run_is_not_piled_up(db: None) -> None:
    """While a run is still going, the next tick of that entry is skipped."""
    release = threading.Event()
    started = threading.Event()

    def slow(entry: ScheduleEntry) -> None:
        started.set()
        release.wait(5)

    entry = ScheduleEntry(name="slow", task="t", interval=1)
    scheduler = InProcessScheduler([entry], run=slow, clock=lambda: 50.0)
    assert scheduler.run_due(51.1) == ["slow"]
    assert started.wait(2)
    assert scheduler.run_due(52.1) == []
    release.set()


def test_a_failing_task_does_not_stop_the_scheduler(db: None) -> None:
    """An exception in a task is logged; the next tick runs again."""
    calls: list[int] = []

    def boom(entry: ScheduleEntry) -> None:
        calls.append(1)
        raise RuntimeError("boom")

    entry = ScheduleEntry(name="boom", task="t", interval=1)
    scheduler = InProcessScheduler([entry], run=boom, clock=lambda: 10.0, background=False)
    assert scheduler.run_due(11.5) == ["boom"]
    assert scheduler.run_due(12.5) == ["boom"]
    assert len(calls) == 2


def test_run_task_runs_the_real_probe_task(
    transactional_db: None,
    load_catalog: Callable[[str], None],
    upstream: Any,
    upstream_control: Any,
) -> None:
    """The health entry, run in-process, probes the catalog's deployments."""
    load_catalog(openai_catalog(upstream.base_url))
    entries = {e.name: e for e in schedule_entries(settings.CELERY_BEAT_SCHEDULE)}
    run_task(entries["deployment-health"])
    for deployment in Deployment.objects.all():
        result = health.health_of(deployment.pk)
        assert result is not None and result.healthy is True


def test_unknown_task_is_logged_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    """A schedule naming a task nobody registered logs an error and goes on."""
    errors: list[str] = []
    monkeypatch.setattr(scheduler.logger, "error", lambda msg, **kw: errors.append(msg))
    run_task(ScheduleEntry(name="ghost", task="routing.tasks.no_such_task", interval=1))
    assert errors == ["scheduler: unknown task"]
