"""``GET /metrics``: Prometheus exposition of every gunicorn worker.

Under gunicorn (``deploy/gunicorn.conf.py`` sets ``PROMETHEUS_MULTIPROC_DIR``
before any worker imports prometheus-client) each worker writes its samples
to files in that directory and this view merges all of them, so whichever
worker answers the scrape reports the whole server. Without the variable
(``runserver``, tests) it reports this process only.

Deployment health and breaker state are read at scrape time from the shared
state the router uses (cache and catalog), not from the per-worker gauges:
a worker that last saw a deployment healthy would otherwise keep reporting
it so under the gauges' ``max`` aggregation.

Access: ``Authorization: Bearer <XROUTER_METRICS_TOKEN>`` or a client address
in ``XROUTER_METRICS_ALLOW``; with neither configured only loopback.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import logging
import os
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from accounts.models import Team
from keys.models import ApiKey
from keys.principal import parse_bearer
from routing.limits.plan import period_bounds, spent_micro
from routing.usage.pricing import to_micro
from xrouter_site.client_ip import client_address

logger = logging.getLogger(__name__)

# Families this view computes from shared state instead of worker files.
_STATE_FAMILIES = frozenset({"xrouter_deployment_healthy", "xrouter_breaker_open"})
_LOOPBACK = ("127.0.0.0/8", "::1/128")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.cache
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)
    except ValueError as exc:
        raise ImproperlyConfigured(f"XROUTER_METRICS_ALLOW: {exc}") from None


def _token_ok(request: HttpRequest) -> bool:
    token: str = settings.XROUTER_METRICS_TOKEN
    credential = parse_bearer(request.META.get("HTTP_AUTHORIZATION", ""))
    return bool(
        token
        and credential is not None
        and hmac.compare_digest(credential.encode(), token.encode())
    )


def _address_ok(request: HttpRequest) -> bool:
    allow: list[str] = settings.XROUTER_METRICS_ALLOW
    if not allow and settings.XROUTER_METRICS_TOKEN:
        return False
    # Behind a trusted proxy, the client it forwarded for, never the proxy.
    address = client_address(request)
    if address is None:
        return False
    return any(address in net for net in _networks(tuple(allow) or _LOOPBACK))


class _Without:
    """A collector that passes on another's families except some names."""

    def __init__(self, inner: Any, names: frozenset[str]) -> None:
        self.inner = inner
        self.names = names

    def collect(self) -> Iterator[Any]:
        for family in self.inner.collect():
            if family.name not in self.names:
                yield family


class DeploymentStateCollector:
    """Health and breaker gauges of every enabled deployment, from shared state.

    Cache keys are the ones :mod:`routing.health` and :mod:`routing.breaker`
    publish. A deployment without a probe result counts as healthy, as the
    router treats it.
    """

    def collect(self) -> Iterator[Any]:
        import time

        from prometheus_client.core import GaugeMetricFamily

        from routing.breaker import breakers
        from routing.health import health_of
        from routing.models import Deployment

        healthy = GaugeMetricFamily(
            "xrouter_deployment_healthy",
            "1 if the last health check passed.",
            labels=["provider", "deployment"],
        )
        breaker = GaugeMetricFamily(
            "xrouter_breaker_open",
            "1 while a deployment's circuit breaker is open.",
            labels=["provider", "deployment"],
        )
        deployments = list(
            Deployment.objects.filter(enabled=True).values_list("id", "provider__name")
        )
        shared: dict[str, Any] = {}
        if settings.XROUTER_SHARED_CACHE and deployments:
            keys = [
                f"{kind}:{dep_id}" for dep_id, _p in deployments for kind in ("health", "breaker")
            ]
            try:
                shared = cache.get_many(keys)
            except Exception:
                logger.warning("metrics: cache unavailable for deployment state", exc_info=True)
        now = time.time()
        for dep_id, provider in deployments:
            labels = [provider, str(dep_id)]
            if settings.XROUTER_SHARED_CACHE:
                result = shared.get(f"health:{dep_id}")
                state = shared.get(f"breaker:{dep_id}")
                is_open = state is not None and now < float(state[0])
            else:
                result = health_of(dep_id)
                is_open = breakers.state(dep_id) == "open"
            healthy.add_metric(labels, 0 if result is not None and not result.healthy else 1)
            breaker.add_metric(labels, 1 if is_open else 0)
        yield healthy
        yield breaker


# Budgets at or above this share of their limit count as "near the limit".
BUDGET_NEAR_RATIO = 0.9
_BUDGET_CACHE_KEY = "metrics:budgets-near-limit"
_BUDGET_CACHE_SECONDS = 60


def budgets_near_limit() -> dict[str, int]:
    """Return how many team and key budgets are spent to ``BUDGET_NEAR_RATIO``.

    Counts only, no team or key labels (SEC-04, and cardinality). Spend is
    summed from usage records, so the result is shared through the cache
    for a minute instead of being recomputed by every scrape.
    """
    cached = cache.get(_BUDGET_CACHE_KEY)
    if isinstance(cached, dict):
        return cached
    counts = {"team": 0, "key": 0}
    budgets: list[tuple[str, int, int | None, Any, str]] = [
        ("team", team_id, None, limit, period)
        for team_id, limit, period in Team.objects.filter(budget_rub__gt=0).values_list(
            "id", "budget_rub", "budget_period"
        )
    ]
    budgets += [
        ("key", team_id, key_id, limit, period)
        for key_id, team_id, limit, period in ApiKey.objects.active()
        .filter(budget_rub__gt=0)
        .values_list("id", "team_id", "budget_rub", "budget_period")
    ]
    for scope, team_id, key_id, limit, period in budgets:
        since, _end = period_bounds(period)
        spent = spent_micro(team_id=team_id, key_id=key_id, since=since)
        if spent >= to_micro(limit) * BUDGET_NEAR_RATIO:
            counts[scope] += 1
    try:
        cache.set(_BUDGET_CACHE_KEY, counts, _BUDGET_CACHE_SECONDS)
    except Exception:
        logger.warning("metrics: could not cache budget counts", exc_info=True)
    return counts


class BudgetCollector:
    """``xrouter_budgets_near_limit{scope}``: budgets spent to 90% or more."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(
            "xrouter_budgets_near_limit",
            f"Team and key budgets spent to {BUDGET_NEAR_RATIO:.0%} or more this period.",
            labels=["scope"],
        )
        try:
            counts = budgets_near_limit()
        except Exception:
            logger.warning("metrics: budget counts unavailable", exc_info=True)
            return
        for scope, count in sorted(counts.items()):
            family.add_metric([scope], count)
        yield family


def _registry() -> Any:
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    # Imported for its side effect: the gateway metrics exist (as zeros)
    # even before this worker has served a request.
    from routing import metrics  # noqa: F401

    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        source: Any = CollectorRegistry()
        MultiProcessCollector(source)
    else:
        source = REGISTRY
    registry.register(_Without(source, _STATE_FAMILIES))
    registry.register(DeploymentStateCollector())
    registry.register(BudgetCollector())
    return registry


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Return the exposition text, or 401/403 to a caller without access."""
    if not (_token_ok(request) or _address_ok(request)):
        if settings.XROUTER_METRICS_TOKEN:
            response = HttpResponse("Unauthorized\n", status=401, content_type="text/plain")
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
        return HttpResponse("Forbidden\n", status=403, content_type="text/plain")
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
