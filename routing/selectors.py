"""Read functions for the routing dashboard pages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from routing import health
from routing.breaker import breakers
from routing.models import Deployment


@dataclass(frozen=True, slots=True)
class DeploymentStatus:
    """A deployment as the dashboard shows it: where it is and how it fares.

    ``healthy`` is None until the first probe; ``breaker`` is "closed",
    "open" or "half-open". Nothing here is secret: no credential, no URL.
    """

    deployment_id: int
    model_id: str
    provider: str
    provider_kind: str
    upstream: str
    priority: int
    weight: int
    healthy: bool | None
    latency_ms: float | None
    checked_at: datetime | None
    error: str
    breaker: str
    # Residency (routing/residency.py): "" when the catalog declares none.
    data_region: str = ""
    stores_prompts: bool = True


def deployment_status_list() -> list[DeploymentStatus]:
    """Return every routable deployment with its last probe and breaker state."""
    deployments = (
        Deployment.objects.filter(enabled=True, provider__enabled=True, model__enabled=True)
        .select_related("provider", "model")
        .order_by("model__model_id", "priority", "id")
    )
    rows = []
    for deployment in deployments:
        result = health.health_of(deployment.pk)
        rows.append(
            DeploymentStatus(
                deployment_id=deployment.pk,
                model_id=deployment.model.model_id,
                provider=deployment.provider.name,
                provider_kind=deployment.provider.kind,
                upstream=deployment.upstream,
                priority=deployment.priority,
                weight=deployment.weight,
                healthy=None if result is None else result.healthy,
                latency_ms=None if result is None else result.latency_ms,
                checked_at=(
                    None if result is None else datetime.fromtimestamp(result.checked_at, UTC)
                ),
                error="" if result is None else result.error,
                breaker=breakers.state(deployment.pk),
                data_region=deployment.data_region,
                stores_prompts=deployment.stores_prompts,
            )
        )
    return rows
