"""Celery entry points of the routing app: health probes, stored responses, audit purge.

Thin wrappers around :mod:`routing.probes`. Beat (or the in-process
scheduler, :mod:`xrouter_site.scheduler`) runs :func:`probe_all_deployments`
every ``XROUTER_HEALTH_INTERVAL_SECONDS``; it fans out one
:func:`probe_deployment` per probe question (one per provider for the models
list, one per upstream model for chat probes; the answer is recorded for
every deployment sharing it) so a hanging upstream delays only its own
probe. Both are safe to run twice (``acks_late`` redelivers after a worker
crash): a probe is a read, and the interval lock in
:func:`routing.probes.probe_slot_claim` keeps repeats from reaching upstream.
"""

from __future__ import annotations

from django.conf import settings

from accounts.audit.services import audit_purge as _audit_purge
from routing.gateway.surfaces import store
from routing.probes import deployment_probe, probe_ids_to_queue
from xrouter_site.celery import app


# Task names are broker identifiers: explicit, so moving this module never
# strands a queued task during a rolling deploy.
@app.task(name="routing.tasks.probe_all_deployments", acks_late=True, ignore_result=True)
def probe_all_deployments() -> int:
    """Queue one probe per question over every enabled deployment; return how many."""
    ids = probe_ids_to_queue()
    # A probe still queued after one interval is stale: the next one is due.
    expires = max(1.0, settings.XROUTER_HEALTH_INTERVAL_SECONDS)
    for deployment_id in ids:
        probe_deployment.apply_async((deployment_id,), expires=expires)
    return len(ids)


@app.task(name="routing.tasks.probe_deployment", acks_late=True, ignore_result=True)
def probe_deployment(deployment_id: int) -> bool | None:
    """Probe one deployment; return its health, or None if skipped."""
    result = deployment_probe(deployment_id=deployment_id)
    return None if result is None else result.healthy


@app.task(name="routing.responses_prune", ignore_result=True)
def responses_prune() -> int:
    """Delete stored /v1/responses results past retention; return how many."""
    return store.responses_prune()


@app.task(name="routing.audit_purge", acks_late=True, ignore_result=True)
def audit_purge() -> int:
    """Delete audit events past ``XROUTER_AUDIT_RETENTION_DAYS``; return how many.

    Hourly from ``CELERY_BEAT_SCHEDULE``; idempotent, so a redelivery after
    a crash only deletes what is still due.
    """
    return _audit_purge()
