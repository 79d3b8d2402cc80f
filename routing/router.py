"""Pick deployments for a request and try them until one serves it.

Candidates, in order: the requested model's deployments, then each model in
the request's ``models`` list (OpenRouter style), then the catalog's
fallbacks. Within a model, deployments go by priority; equal priorities are
shuffled by weight, preferring healthy and faster ones. Deployments whose
breaker is open or whose last probe failed are skipped while any other
candidate is left. Deployments the request's data policy forbids
(:func:`routing.residency.refusal`) are never called: they stay in the
chain as skipped attempts that say why.

:func:`execute` calls each candidate until one succeeds, falling back only
on retryable :class:`~providers.base.ProviderError`s (connection errors,
timeouts, 429, 5xx), never on errors caused by the request itself. Between
attempts it sleeps an exponential backoff with full jitter; every attempt
fits in the request's total deadline. It is the only retry loop: adapters and
HTTP clients never retry.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeAlias, TypeVar

from django.conf import settings

from providers.base import Provider
from providers.errors import ProviderError
from providers.http import deadline_scope
from routing import health
from routing.breaker import breakers
from routing.residency import UNRESTRICTED, Residency, refusal
from routing.table import DeploymentRoute, ModelRoute, RoutingTable
from xrouter_site.errors import ErrorCode

logger = logging.getLogger(__name__)
T = TypeVar("T")

# One try at one deployment: (adapter, candidate, seconds left) -> result.
AttemptCall: TypeAlias = Callable[[Provider, "Candidate", float], T]


@dataclass(frozen=True, slots=True)
class Candidate:
    route: ModelRoute
    deployment: DeploymentRoute
    # Why the data policy forbids this deployment ("" when it may serve).
    refused: str = ""


@dataclass(slots=True)
class Attempt:
    model: str
    provider: str
    deployment_id: int
    status: int = 200
    error_code: str = ""
    latency_ms: float = 0.0
    # Set when the deployment was not called: the data policy's reason.
    skipped: str = ""

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "model": self.model,
            "provider": self.provider,
            "deployment_id": self.deployment_id,
            "status": self.status,
            "error_code": self.error_code,
            "latency_ms": round(self.latency_ms, 1),
        }
        if self.skipped:
            out["skipped"] = self.skipped
        return out


@dataclass(slots=True)
class Outcome(Generic[T]):
    result: T
    candidate: Candidate
    attempts: list[Attempt] = field(default_factory=list)


class AllAttemptsFailed(Exception):
    """Every candidate failed; ``last`` is the final error, ``attempts`` the chain."""

    def __init__(self, last: ProviderError, attempts: list[Attempt]) -> None:
        super().__init__(last.message)
        self.last = last
        self.attempts = attempts


def _order(route: ModelRoute, table: RoutingTable) -> list[DeploymentRoute]:
    usable = [d for d in route.deployments if not table.providers[d.provider].unavailable]
    by_priority: dict[int, list[DeploymentRoute]] = {}
    for deployment in usable:
        by_priority.setdefault(deployment.priority, []).append(deployment)
    ordered: list[DeploymentRoute] = []
    for priority in sorted(by_priority):
        group = by_priority[priority]
        if len(group) > 1:
            group = _weighted_shuffle(group)
        ordered.extend(group)
    return ordered


def _weighted_shuffle(group: list[DeploymentRoute]) -> list[DeploymentRoute]:
    """Order by weight-biased random keys, with faster healthy ones favoured."""

    def key(deployment: DeploymentRoute) -> float:
        weight = float(max(deployment.weight, 1))
        state = health.health_of(deployment.deployment_id)
        if state is not None and state.latency_ms:
            # Halve the odds for every 500 ms of probe latency.
            weight /= 2 ** (state.latency_ms / 500)
        return random.random() ** (1 / weight)  # noqa: S311 (load balancing, not security)

    return sorted(group, key=key, reverse=True)


# The routing table whose deployments' health was read in one go.
_primed: RoutingTable | None = None


def _prime_health(table: RoutingTable) -> None:
    global _primed
    if _primed is table:
        return
    _primed = table
    health.health_prime(d.deployment_id for r in table.models.values() for d in r.deployments)


def candidates(
    table: RoutingTable, routes: list[ModelRoute], policy: Residency = UNRESTRICTED
) -> list[Candidate]:
    """Return every deployment that may serve, best first, skipped ones last.

    Deployments ``policy`` forbids come back with ``refused`` set, in their
    place in the order; :func:`execute` records and skips them.
    """
    _prime_health(table)
    good: list[Candidate] = []
    skipped: list[Candidate] = []
    seen: set[int] = set()
    for route in routes:
        for deployment in _order(route, table):
            if deployment.deployment_id in seen:
                continue
            seen.add(deployment.deployment_id)
            reason = (
                refusal(
                    policy,
                    data_region=deployment.data_region,
                    stores_prompts=deployment.stores_prompts,
                )
                if policy.restricts
                else ""
            )
            if reason:
                good.append(Candidate(route, deployment, reason))
                continue
            state = health.health_of(deployment.deployment_id)
            candidate = Candidate(route, deployment)
            if state is not None and not state.healthy:
                skipped.append(candidate)
            else:
                good.append(candidate)
    # Unhealthy deployments stay as a last resort: a probe can be wrong.
    return good + skipped


def backoff_seconds(attempt: int) -> float:
    """Full-jitter exponential backoff before attempt number ``attempt`` (>= 1)."""
    base = settings.XROUTER_RETRY_BACKOFF_BASE_SECONDS
    cap = settings.XROUTER_RETRY_BACKOFF_MAX_SECONDS
    return random.uniform(0, min(cap, base * (2 ** (attempt - 1))))  # noqa: S311


def execute(
    options: list[Candidate],
    call: AttemptCall[T],
    adapter_for: Callable[[str], Provider],
    *,
    deadline: float,
) -> Outcome[T]:
    """Call candidates in order until one succeeds; see the module docstring.

    ``call(adapter, candidate, remaining_seconds)`` performs one attempt.
    ``deadline`` is a ``time.monotonic()`` value. Raises AllAttemptsFailed.
    """
    attempts: list[Attempt] = []
    last: ProviderError | None = None
    max_attempts = settings.XROUTER_MAX_ATTEMPTS
    tried = 0
    for candidate in options:
        if tried >= max_attempts:
            break
        deployment = candidate.deployment
        if candidate.refused:
            # Forbidden by the data policy: nothing is sent, the chain says why.
            attempts.append(
                Attempt(
                    candidate.route.model_id,
                    deployment.provider,
                    deployment.deployment_id,
                    403,
                    ErrorCode.DATA_POLICY,
                    skipped=candidate.refused,
                )
            )
            continue
        if not breakers.allows(deployment.deployment_id):
            attempts.append(
                Attempt(
                    candidate.route.model_id,
                    deployment.provider,
                    deployment.deployment_id,
                    503,
                    ErrorCode.BREAKER_OPEN,
                )
            )
            continue
        if tried:
            pause = backoff_seconds(tried)
            if time.monotonic() + pause >= deadline:
                break
            time.sleep(pause)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        tried += 1
        started = time.perf_counter()
        attempt = Attempt(candidate.route.model_id, deployment.provider, deployment.deployment_id)
        try:
            with deadline_scope(deadline):
                result = call(adapter_for(deployment.provider), candidate, remaining)
        except ProviderError as exc:
            attempt.latency_ms = (time.perf_counter() - started) * 1000
            attempt.status = exc.status
            attempt.error_code = exc.code
            attempts.append(attempt)
            last = exc
            _count_upstream_error(exc)
            if exc.retryable:
                breakers.record_failure(deployment.deployment_id)
                continue
            raise AllAttemptsFailed(exc, attempts) from exc
        attempt.latency_ms = (time.perf_counter() - started) * 1000
        attempts.append(attempt)
        breakers.record_success(deployment.deployment_id)
        return Outcome(result, candidate, attempts)
    if last is None:
        last = ProviderError(
            "No deployment of this model is available right now.",
            provider=options[0].deployment.provider if options else "",
            retryable=True,
            status=503,
            code=ErrorCode.NO_AVAILABLE_DEPLOYMENT,
        )
    raise AllAttemptsFailed(last, attempts)


def _count_upstream_error(exc: ProviderError) -> None:
    try:
        from routing import metrics

        metrics.UPSTREAM_ERRORS.labels(provider=exc.provider, code=exc.code).inc()
    except Exception:
        logger.debug("metrics unavailable", exc_info=True)
