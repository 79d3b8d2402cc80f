"""The routing table: the catalog as each worker holds it in memory.

Requests never query the catalog tables. Each worker keeps a
:class:`RoutingTable` built from the database and rebuilds it when the
catalog version in the shared cache changes (checked at most once a second);
every catalog edit bumps that version. Without a shared cache the table is
rebuilt every few seconds instead, since another process's edit cannot be
announced.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from providers.base import Provider as ProviderAdapter
from providers.base import ProviderConfig
from providers.registry import provider_class
from routing.models import Deployment, Model, Provider
from xrouter_site.state import on_reset

logger = logging.getLogger(__name__)

VERSION_KEY = "catalog:version"
_SHARED_CHECK_INTERVAL = 1.0
_LOCAL_REBUILD_INTERVAL = 5.0


@dataclass(frozen=True, slots=True)
class DeploymentRoute:
    deployment_id: int
    provider: str
    upstream: str
    priority: int
    weight: int
    # Residency (routing/residency.py): ISO alpha-2 region, "" undeclared.
    data_region: str = ""
    stores_prompts: bool = True
    # Request parameters it honours (providers.base.PARAMETERS).
    supported_parameters: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ModelRoute:
    model_id: str
    type: str
    display_name: str
    created: int
    context_length: int | None
    prompt_price: Decimal | None
    completion_price: Decimal | None
    deployments: tuple[DeploymentRoute, ...]
    # Version lifecycle of ``vendor/model:branch`` ids (routing/versions.py).
    deprecated: bool = False
    version_since: date | None = None
    version_until: date | None = None
    upstream_version: str = ""
    # Public ids to fall back to, in order (an alias has only these).
    fallbacks: tuple[str, ...] = ()
    key_rpm_limit: int | None = None
    key_tpm_limit: int | None = None
    key_concurrency_limit: int | None = None


@dataclass(slots=True)
class ProviderEntry:
    config: ProviderConfig
    # Why this provider cannot serve (missing credential...), or "".
    unavailable: str = ""


@dataclass(slots=True)
class RoutingTable:
    version: str
    models: dict[str, ModelRoute] = field(default_factory=dict)
    providers: dict[str, ProviderEntry] = field(default_factory=dict)
    # deployment id -> (its model, itself), built on first use (probes look
    # one deployment up per call: a walk of every model made a probe round
    # over 3,000 deployments quadratic, issue 19).
    _by_deployment: dict[int, tuple[ModelRoute, DeploymentRoute]] | None = None

    def deployment(self, deployment_id: int) -> tuple[ModelRoute, DeploymentRoute] | None:
        """Return the model and route of an enabled deployment, or None."""
        index = self._by_deployment
        if index is None:
            index = {
                d.deployment_id: (route, d)
                for route in self.models.values()
                for d in route.deployments
            }
            self._by_deployment = index
        return index.get(deployment_id)

    def adapter(self, name: str) -> ProviderAdapter:
        """Return this worker's adapter for provider ``name``.

        Adapters outlive table rebuilds while their config is unchanged, so
        connection pools and provider tokens survive catalog edits.
        """
        entry = self.providers[name]
        return _adapter_for(entry.config)


_adapters: dict[str, tuple[ProviderConfig, ProviderAdapter]] = {}
_adapters_lock = threading.Lock()


def _adapter_for(config: ProviderConfig) -> ProviderAdapter:
    current = _adapters.get(config.name)
    if current is not None and current[0] == config:
        return current[1]
    with _adapters_lock:
        current = _adapters.get(config.name)
        if current is not None and current[0] == config:
            return current[1]
        adapter = provider_class(config.kind)(config)
        old = _adapters.get(config.name)
        _adapters[config.name] = (config, adapter)
    if old is not None:
        old[1].close()
    return adapter


def _provider_config(provider: Provider) -> ProviderEntry:
    credential = ""
    unavailable = provider.credential_problem()
    if provider.api_key_env and not unavailable:
        credential = os.environ.get(provider.api_key_env, "")
        secret_file = os.environ.get(f"{provider.api_key_env}_FILE")
        if not credential and secret_file:
            try:
                with open(secret_file, encoding="utf-8") as handle:
                    credential = handle.read().strip()
            except OSError:
                unavailable = f"cannot read {provider.api_key_env}_FILE"
        if not credential and not unavailable:
            unavailable = f"the credential variable {provider.api_key_env} is not set"
    options: dict[str, Any] = dict(provider.options or {})
    config = ProviderConfig(
        name=provider.name,
        kind=provider.kind,
        base_url=provider.base_url,
        credential=credential,
        options=options,
        connect_timeout=float(
            options.pop("connect_timeout", settings.XROUTER_UPSTREAM_CONNECT_TIMEOUT)
        ),
        read_timeout=float(options.pop("read_timeout", settings.XROUTER_UPSTREAM_READ_TIMEOUT)),
        pool_size=int(options.pop("pool_size", settings.XROUTER_UPSTREAM_POOL_SIZE)),
    )
    return ProviderEntry(config=config, unavailable=unavailable)


def _supported_parameters(deployment: Deployment) -> frozenset[str]:
    if deployment.supported_parameters is not None:
        return frozenset(deployment.supported_parameters)
    try:
        return provider_class(deployment.provider.kind).supported_parameters
    except KeyError:  # an unknown kind serves nothing anyway
        return frozenset()


def build_table(version: str) -> RoutingTable:
    """Read the enabled catalog from the database into a new table."""
    table = RoutingTable(version=version)
    for provider in Provider.objects.filter(enabled=True):
        table.providers[provider.name] = _provider_config(provider)
    deployments: dict[int, list[DeploymentRoute]] = {}
    for dep in Deployment.objects.filter(enabled=True, provider__enabled=True).select_related(
        "provider"
    ):
        deployments.setdefault(dep.model_id, []).append(
            DeploymentRoute(
                deployment_id=dep.pk,
                provider=dep.provider.name,
                upstream=dep.upstream,
                priority=dep.priority,
                weight=dep.weight,
                data_region=dep.data_region,
                stores_prompts=dep.stores_prompts,
                supported_parameters=_supported_parameters(dep),
            )
        )
    for model in Model.objects.filter(enabled=True):
        routes = sorted(deployments.get(model.pk, []), key=lambda d: (d.priority, d.deployment_id))
        table.models[model.model_id] = ModelRoute(
            model_id=model.model_id,
            type=model.type,
            display_name=model.display_name,
            created=int(model.created_at.timestamp()),
            context_length=model.context_length,
            prompt_price=model.prompt_price,
            completion_price=model.completion_price,
            deployments=tuple(routes),
            deprecated=model.deprecated,
            version_since=model.version_since,
            version_until=model.version_until,
            upstream_version=model.upstream_version,
            fallbacks=tuple(model.fallbacks or ()),
            key_rpm_limit=model.key_rpm_limit,
            key_tpm_limit=model.key_tpm_limit,
            key_concurrency_limit=model.key_concurrency_limit,
        )
    _add_builtin_aliases(table)
    return table


def _add_builtin_aliases(table: RoutingTable) -> None:
    """Add ``xrouter/auto`` and ``xrouter/cheap`` unless the catalog defines them.

    ``auto`` tries every chat model in catalog order; ``cheap`` the same
    models from the lowest price per 1K prompt + completion tokens up.
    """
    chat = [r for r in table.models.values() if r.type == "chat" and r.deployments]
    if not chat:
        return

    def price(route: ModelRoute) -> Decimal:
        unknown = Decimal("1e9")  # unpriced models go last
        prompt = route.prompt_price if route.prompt_price is not None else unknown
        completion = route.completion_price if route.completion_price is not None else unknown
        return prompt + completion

    aliases = {
        "xrouter/auto": [r.model_id for r in chat],
        "xrouter/cheap": [r.model_id for r in sorted(chat, key=price)],
    }
    for alias, targets in aliases.items():
        if alias not in table.models:
            table.models[alias] = ModelRoute(
                model_id=alias,
                type="chat",
                display_name=alias,
                created=0,
                context_length=None,
                prompt_price=None,
                completion_price=None,
                deployments=(),
                fallbacks=tuple(targets),
            )


_table: RoutingTable | None = None
_next_check = 0.0
_table_lock = threading.Lock()


def _shared_version() -> str | None:
    if not settings.XROUTER_SHARED_CACHE:
        return None
    try:
        version = cache.get(VERSION_KEY)
        if version is None:
            version = uuid.uuid4().hex
            if not cache.add(VERSION_KEY, version, None):
                version = cache.get(VERSION_KEY) or version
        return str(version)
    except Exception:
        logger.warning("shared cache unavailable for the catalog version", exc_info=True)
        return _table.version if _table is not None else None


def get_table() -> RoutingTable:
    """Return this worker's routing table, rebuilding it if it is stale."""
    global _table, _next_check
    now = time.monotonic()
    table = _table
    if table is not None and now < _next_check:
        return table
    with _table_lock:
        if _table is not None and time.monotonic() < _next_check:
            return _table
        version = _shared_version()
        if _table is None or version is None or version != _table.version:
            _table = build_table(version or uuid.uuid4().hex)
        interval = (
            _SHARED_CHECK_INTERVAL if settings.XROUTER_SHARED_CACHE else _LOCAL_REBUILD_INTERVAL
        )
        _next_check = time.monotonic() + interval
        return _table


def catalog_version_bump() -> None:
    """Tell every worker to rebuild its table (call after catalog edits)."""
    global _next_check
    _next_check = 0.0
    if _table is not None:
        _table.version = ""
    try:
        cache.set(VERSION_KEY, uuid.uuid4().hex, None)
    except Exception:
        logger.error("could not publish the catalog version", exc_info=True)


def catalog_model_list(*, model_type: str = "") -> list[ModelRoute]:
    """Return the live catalog's models sorted by id, optionally of one type."""
    models = get_table().models.values()
    return sorted(
        (m for m in models if not model_type or m.type == model_type), key=lambda m: m.model_id
    )


def catalog_model_ids() -> set[str]:
    """Return every public model id and every version-less base id in the catalog."""
    ids: set[str] = set()
    for model_id in get_table().models:
        ids.add(model_id)
        ids.add(model_id.partition(":")[0])
    return ids


def reset_table() -> None:
    """Forget this worker's table and adapters (tests)."""
    global _table, _next_check
    with _adapters_lock:
        for _config, adapter in _adapters.values():
            adapter.close()
        _adapters.clear()
    _table = None
    _next_check = 0.0


@receiver(post_save, sender=Provider)
@receiver(post_save, sender=Model)
@receiver(post_save, sender=Deployment)
@receiver(post_delete, sender=Provider)
@receiver(post_delete, sender=Model)
@receiver(post_delete, sender=Deployment)
def _bump_on_change(**kwargs: Any) -> None:
    from django.db import transaction

    connection = transaction.get_connection()
    if connection.in_atomic_block and any(
        func is catalog_version_bump for _sids, func, _robust in connection.run_on_commit
    ):
        # One bump per transaction is enough: a catalog load saving 4,000
        # rows queued 4,000 (a shared-cache write each). A rolled-back
        # savepoint drops its callbacks, so the next change queues anew.
        return
    transaction.on_commit(catalog_version_bump)


on_reset("routing.table", reset_table)
