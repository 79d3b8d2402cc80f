"""Deployment health as measured by the scheduled probes.

Probes (``routing.tasks``) write each deployment's last result to the shared
cache and announce it; the router only reads it, in bulk, within a second of
an announcement (``routing.cache_mirror``).
A deployment with no result yet counts as healthy: a fresh gateway must not
refuse traffic before its first probe.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from django.conf import settings
from django.core.cache import cache

from routing.cache_mirror import CacheMirror
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
    return health_record_many(
        deployment_ids=[deployment_id], healthy=healthy, latency_ms=latency_ms, error=error
    )


def health_record_many(
    *, deployment_ids: list[int], healthy: bool, latency_ms: float | None, error: str = ""
) -> Health:
    """Store one probe result for every deployment it answers for, in one write.

    A models-list probe answers for all of a provider's deployments
    (``routing.probes``): one ``set_many``, not a round trip per deployment.
    """
    result = Health(healthy=healthy, latency_ms=latency_ms, checked_at=time.time(), error=error)
    ttl = int(settings.XROUTER_HEALTH_INTERVAL_SECONDS * 5) + 1
    cache.set_many({_key(i): result for i in deployment_ids}, ttl)
    _mirror.changed()
    for deployment_id in deployment_ids:
        _mirror.put(deployment_id, result)
    try:
        from routing import metrics

        for deployment_id in deployment_ids:
            metrics.DEPLOYMENT_HEALTHY.labels(provider="", deployment=str(deployment_id)).set(
                1 if healthy else 0
            )
    except Exception:
        logger.debug("metrics unavailable", exc_info=True)
    return result


def _decode(value: Any) -> Health:
    return cast(Health, value)


_mirror: CacheMirror[Health] = CacheMirror(
    what="health", key=_key, decode=_decode, interval=_REFRESH_SECONDS
)


def health_prime(deployment_ids: Iterable[int]) -> None:
    """Read the results of these deployments now, together (a new routing table)."""
    _mirror.know(deployment_ids)


def health_of(deployment_id: int) -> Health | None:
    """Return the last probe result of a deployment, or None if unknown."""
    return _mirror.get(deployment_id)


def reset() -> None:
    _mirror.reset()


on_reset("routing.health", reset)
