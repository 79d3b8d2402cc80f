"""Deployment health as measured by the scheduled probes.

Probes (``routing.tasks``) write each deployment's last result to the shared
cache; the router only reads it, in bulk, at most once a second per worker.
A deployment with no result yet counts as healthy: a fresh gateway must not
refuse traffic before its first probe.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from xrouter_site.state import on_reset

logger = logging.getLogger(__name__)

_REFRESH_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Health:
    healthy: bool
    latency_ms: float | None
    checked_at: float
    error: str = ""


def _key(deployment_id: int) -> str:
    return f"health:{deployment_id}"


def health_record(
    *, deployment_id: int, healthy: bool, latency_ms: float | None, error: str = ""
) -> Health:
    """Store a probe result; it expires after a few probe intervals."""
    result = Health(healthy=healthy, latency_ms=latency_ms, checked_at=time.time(), error=error)
    ttl = int(settings.XROUTER_HEALTH_INTERVAL_SECONDS * 5) + 1
    cache.set(_key(deployment_id), result, ttl)
    _local[deployment_id] = result
    try:
        from routing import metrics

        metrics.DEPLOYMENT_HEALTHY.labels(provider="", deployment=str(deployment_id)).set(
            1 if healthy else 0
        )
    except Exception:
        logger.debug("metrics unavailable", exc_info=True)
    return result


_local: dict[int, Health] = {}
_known: set[int] = set()
_next_refresh = 0.0


def _refresh() -> None:
    global _next_refresh
    now = time.monotonic()
    if now < _next_refresh or not _known:
        return
    _next_refresh = now + _REFRESH_SECONDS
    try:
        values = cache.get_many([_key(d) for d in _known])
    except Exception:
        logger.warning("health: cache unavailable; keeping the last results", exc_info=True)
        return
    for deployment_id in _known:
        value = values.get(_key(deployment_id))
        if value is None:
            _local.pop(deployment_id, None)
        else:
            _local[deployment_id] = value


def health_of(deployment_id: int) -> Health | None:
    """Return the last probe result of a deployment, or None if unknown."""
    global _next_refresh
    if deployment_id not in _known:
        # First look from this process: read the shared result now instead
        # of treating the deployment as unknown until the next refresh.
        _known.add(deployment_id)
        _next_refresh = 0.0
    _refresh()
    return _local.get(deployment_id)


def reset() -> None:
    global _next_refresh
    _local.clear()
    _known.clear()
    _next_refresh = 0.0


on_reset("routing.health", reset)
