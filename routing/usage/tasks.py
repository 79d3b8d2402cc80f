"""Celery entry points for usage roll-ups and retention (thin wrappers).

Scheduled from ``CELERY_BEAT_SCHEDULE`` in settings; arguments are plain
ISO dates so they serialise as JSON.
"""

from __future__ import annotations

from datetime import date

from routing.usage import rollups
from xrouter_site.celery import app


@app.task(name="routing.usage_rollup_recent")
def usage_rollup_recent() -> int:
    """Roll up today and yesterday; return the number of roll-up rows."""
    return sum(result.rows for result in rollups.usage_rollup_recent())


@app.task(name="routing.usage_rollup_day")
def usage_rollup_day(day: str) -> int:
    """Roll up one ISO ``day`` (backfill); return the number of roll-up rows."""
    return rollups.usage_rollup_day(day=date.fromisoformat(day)).rows


@app.task(name="routing.usage_prune")
def usage_prune() -> int:
    """Delete raw usage records past retention; return how many."""
    return rollups.usage_prune()
