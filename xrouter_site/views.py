"""Probes for orchestrators."""

from __future__ import annotations

import logging
import os

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Depends on nothing else, so a database
    or Redis outage does not make the orchestrator restart every pod."""
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: the database and the cache are reachable, and the process
    is not draining (the preStop hook created XROUTER_DRAIN_FILE: answer 503
    so load balancers stop sending before SIGTERM stops the listener)."""
    if settings.XROUTER_DRAIN_FILE and os.path.exists(settings.XROUTER_DRAIN_FILE):
        return JsonResponse({"status": "draining", "checks": {}}, status=503)
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:
        logger.warning("readiness: database unreachable", exc_info=True)
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        cache.set("readyz", "1", 5)
        checks["cache"] = "ok" if cache.get("readyz") == "1" else "error: no round trip"
    except Exception as exc:
        logger.warning("readiness: cache unreachable", exc_info=True)
        checks["cache"] = f"error: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )
