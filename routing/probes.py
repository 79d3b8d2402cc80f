"""Health probes of deployments: the service behind ``routing.tasks``.

A probe asks one deployment's upstream a cheap question and records the
answer with :func:`routing.health.health_record`, where the router reads it.
By default the question is the adapter's ``health_check()`` (a models list,
or Yandex's tokenizer), which no provider bills. A provider whose catalog
options say ``health_check: chat`` is asked for a 1-token completion of its
deployment's upstream model instead (an embedding model embeds one word):
slower and billed by the provider, but it proves the model itself answers.
Probes never write usage records, so a client is never billed for one.

Probes use their own adapter per provider with short timeouts
(``XROUTER_HEALTH_TIMEOUT_SECONDS``) and a pool of two connections, so a
hanging upstream cannot hold a probe for the request timeout, nor take
connections from client requests.

One question, one call: deployments that would send the upstream the same
request share one probe (:func:`probe_question`). The models list depends
only on the provider, so a provider serving 1,000 models is asked once per
interval, not 1,000 times; a chat probe depends on the provider and the
upstream model. The answer is recorded for every deployment that shares the
question, so each deployment still gets a result every interval. Issue 19:
the bench's 1,000 models x 3 deployments on 3 providers made 3,000 probe
calls per 30 s (100 a second) that asked 3 questions.

Rate limit: at most one probe per question per interval window
(``XROUTER_HEALTH_INTERVAL_SECONDS``), however many Celery beats, workers or
in-process schedulers ask. The window is claimed with an atomic
``cache.add``; without a shared cache the claim is per process, which is what
the per-process health view of a zero-config run needs.

Usage::

    from routing.probes import deployment_probe

    result = deployment_probe(deployment_id=7)  # None: skipped or unknown
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid

from django.conf import settings
from django.core.cache import cache

from providers.base import ChatRequest, EmbeddingRequest, Message, ProviderConfig
from providers.base import Provider as ProviderAdapter
from providers.errors import ProviderError
from providers.registry import provider_class
from routing.health import Health, health_record_many
from routing.table import DeploymentRoute, ModelRoute, RoutingTable, get_table

logger = logging.getLogger(__name__)

#: Catalog provider option that selects the probe: "models" (default) or "chat".
HEALTH_CHECK_OPTION = "health_check"
PROBE_MODES = ("models", "chat")

_adapters: dict[str, tuple[ProviderConfig, ProviderAdapter]] = {}
_adapters_lock = threading.Lock()
# The last routing table and its probe groups (probe_groups).
_groups: tuple[RoutingTable, dict[tuple[str, ...], list[int]]] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ProbeTarget:
    """A deployment as the probe needs it: where it is and what it serves."""

    deployment: DeploymentRoute
    route: ModelRoute


def deployment_ids_to_probe(table: RoutingTable | None = None) -> list[int]:
    """Return the ids of every enabled deployment, in a stable order."""
    table = table or get_table()
    ids = {d.deployment_id for route in table.models.values() for d in route.deployments}
    return sorted(ids)


def probe_question(table: RoutingTable, target: ProbeTarget) -> tuple[str, ...]:
    """Return what probing ``target`` asks upstream; equal tuples, equal requests.

    The models list (and an unavailable provider's recorded reason) depends
    on the provider alone; a chat probe also on the model type and the
    upstream model it names.
    """
    deployment = target.deployment
    entry = table.providers[deployment.provider]
    if entry.unavailable or probe_mode(entry.config) == "models":
        return ("models", deployment.provider)
    return ("chat", deployment.provider, target.route.type, deployment.upstream)


def probe_groups(table: RoutingTable | None = None) -> dict[tuple[str, ...], list[int]]:
    """Return the deployment ids sharing each probe question, ids ascending.

    Computed once per routing table (a catalog edit builds a new one), so a
    probe finds the deployments it answers for without walking the catalog.
    """
    global _groups
    table = table or get_table()
    cached = _groups
    if cached is not None and cached[0] is table:
        return cached[1]
    groups: dict[tuple[str, ...], list[int]] = {}
    for deployment_id in deployment_ids_to_probe(table):
        target = _find(table, deployment_id)
        if target is not None:
            groups.setdefault(probe_question(table, target), []).append(deployment_id)
    _groups = (table, groups)
    return groups


def probe_ids_to_queue(table: RoutingTable | None = None) -> list[int]:
    """Return one deployment id per probe question (its lowest), ascending."""
    return sorted(ids[0] for ids in probe_groups(table).values())


def _find(table: RoutingTable, deployment_id: int) -> ProbeTarget | None:
    found = table.deployment(deployment_id)
    if found is None:
        return None
    return ProbeTarget(deployment=found[1], route=found[0])


def _sharing(table: RoutingTable, target: ProbeTarget) -> list[int]:
    """Return the ids of every deployment asked the same question as ``target``."""
    question = probe_question(table, target)
    return probe_groups(table).get(question) or [target.deployment.deployment_id]


def _probe_adapter(config: ProviderConfig) -> ProviderAdapter:
    """Return this process's probe adapter for ``config`` (short timeouts).

    Separate from the request adapters in :mod:`routing.table` so the probe's
    timeouts stay short and its connections come from its own small pool.
    """
    timeout = settings.XROUTER_HEALTH_TIMEOUT_SECONDS
    probe_config = dataclasses.replace(
        config,
        connect_timeout=min(config.connect_timeout, timeout),
        read_timeout=timeout,
        pool_size=2,
    )
    with _adapters_lock:
        current = _adapters.get(config.name)
        if current is not None and current[0] == probe_config:
            return current[1]
        adapter = provider_class(config.kind)(probe_config)
        _adapters[config.name] = (probe_config, adapter)
    if current is not None:
        current[1].close()
    return adapter


def probe_mode(config: ProviderConfig) -> str:
    """Return how a provider is probed: "models" or "chat" (catalog option)."""
    mode = str(config.options.get(HEALTH_CHECK_OPTION) or "models")
    if mode not in PROBE_MODES:
        logger.warning(
            "unknown health_check option; probing with the models list",
            extra={"provider": config.name, "health_check": mode},
        )
        return "models"
    return mode


def probe_slot_claim(deployment_id: int, *, now: float | None = None) -> bool:
    """Claim this interval's probe of a deployment; False if already taken.

    The window is aligned to wall-clock multiples of the interval so every
    process computes the same key without talking to the others.
    """
    interval = max(settings.XROUTER_HEALTH_INTERVAL_SECONDS, 0.001)
    slot = int((time.time() if now is None else now) // interval)
    # The key outlives its window a little; it only needs to block that one.
    ttl = max(1, int(interval) + 1)
    try:
        return bool(cache.add(f"health:probe:{deployment_id}:{slot}", 1, ttl))
    except Exception:
        # A cache outage must not stop health checks; a duplicate probe is cheap.
        logger.warning("health: cache unavailable for the probe lock", exc_info=True)
        return True


def _ask(adapter: ProviderAdapter, target: ProbeTarget, mode: str) -> None:
    if mode == "models":
        adapter.health_check()
        return
    request_id = f"probe-{uuid.uuid4().hex[:16]}"
    if target.route.type == "embedding":
        adapter.embed(
            EmbeddingRequest(
                model=target.deployment.upstream, inputs=["ping"], request_id=request_id
            )
        )
        return
    adapter.chat(
        ChatRequest(
            model=target.deployment.upstream,
            messages=[Message(role="user", content="ping")],
            max_tokens=1,
            request_id=request_id,
        )
    )


def deployment_probe(*, deployment_id: int, force: bool = False) -> Health | None:
    """Probe one deployment and record the result; return it.

    The result is recorded for every deployment that shares the question
    (:func:`probe_question`), and the interval's claim is the question's, so
    a probe of any of them in the same interval is skipped.

    Returns None, without calling upstream, when the deployment is not in
    the routing table (disabled or removed) or when this interval's probe of
    its question already ran elsewhere (``force`` skips that check). Never
    raises for an upstream failure: that is what the recorded result says.
    """
    table = get_table()
    target = _find(table, deployment_id)
    if target is None:
        return None
    sharing = _sharing(table, target)
    # The group's lowest id names the claim: every member computes the same.
    if not force and not probe_slot_claim(sharing[0]):
        return None
    entry = table.providers[target.deployment.provider]
    if entry.unavailable:
        # The router already leaves it out; the dashboard should say why.
        return health_record_many(
            deployment_ids=sharing, healthy=False, latency_ms=None, error=entry.unavailable
        )
    mode = probe_mode(entry.config)
    started = time.perf_counter()
    error = ""
    try:
        _ask(_probe_adapter(entry.config), target, mode)
    except ProviderError as exc:
        # The message is client-safe by contract, so the dashboard may show it.
        error = f"{exc.status} {exc.code}: {exc.message}"
    except Exception as exc:
        logger.exception(
            "health probe crashed",
            extra={"deployment_id": deployment_id, "provider": entry.config.name},
        )
        error = f"probe failed: {type(exc).__name__}"
    latency_ms = round((time.perf_counter() - started) * 1000, 1)
    healthy = not error
    if not healthy:
        logger.warning(
            "deployment probe failed",
            extra={
                "deployment_id": deployment_id,
                "deployments": len(sharing),
                "provider": entry.config.name,
                "mode": mode,
                "error": error,
            },
        )
    return health_record_many(
        deployment_ids=sharing,
        healthy=healthy,
        # A failed probe's latency says nothing about the upstream's speed.
        latency_ms=latency_ms if healthy else None,
        error=error,
    )


def reset_probe_adapters() -> None:
    """Close and forget this process's probe adapters and groups (tests)."""
    global _groups
    _groups = None
    with _adapters_lock:
        for _config, adapter in _adapters.values():
            adapter.close()
        _adapters.clear()
