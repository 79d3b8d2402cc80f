"""Write operations on the catalog: load the declarative file."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from providers.base import PARAMETERS
from providers.registry import PROVIDER_KINDS
from routing import residency
from routing.models import Deployment, Model, Provider
from routing.table import catalog_version_bump
from routing.versions import CatalogVersionError, expand_versions

logger = logging.getLogger(__name__)

# data_region / stores_prompts on a provider are the defaults of its
# deployments; a deployment (or a model's provider/upstream shorthand) may
# override them.
_RESIDENCY_FIELDS = {"data_region", "stores_prompts"}
_PROVIDER_FIELDS = {
    "name",
    "kind",
    "base_url",
    "api_key_env",
    "options",
    "enabled",
    *_RESIDENCY_FIELDS,
}
_MODEL_FIELDS = {
    "id",
    "name",
    "type",
    "provider",
    "upstream",
    "deployments",
    "context_length",
    "pricing",
    "enabled",
    "options",
    # Versioned models (routing/versions.py): a ``versions`` block, or the
    # per-branch fields it expands into.
    "versions",
    "deprecated",
    "since",
    "until",
    "model_version",
    # Routing: models to fall back to (alone: an alias), per-key defaults.
    "fallbacks",
    "limits",
    *_RESIDENCY_FIELDS,
    # Shorthand for the single deployment's own list.
    "supported_parameters",
}
_DEPLOYMENT_FIELDS = {
    "provider",
    "upstream",
    "priority",
    "weight",
    "enabled",
    "supported_parameters",
    *_RESIDENCY_FIELDS,
}


class CatalogError(ValueError):
    """The catalog file is malformed; the message says where."""


@dataclass(frozen=True)
class CatalogLoadResult:
    providers: int
    models: int
    retired: int


def _check_fields(entry: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise CatalogError(f"{where}: expected a mapping")
    unknown = set(entry) - allowed
    if unknown:
        raise CatalogError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    return entry


def _price(value: Any, where: str) -> Decimal | None:
    if value is None:
        return None
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        raise CatalogError(f"{where}: {value!r} is not a number") from None
    if price < 0:
        raise CatalogError(f"{where}: a price cannot be negative")
    return price


def _residency(entry: dict[str, Any], defaults: tuple[str, bool], where: str) -> tuple[str, bool]:
    """Read ``data_region`` / ``stores_prompts`` from ``entry``, else ``defaults``."""
    region, stores = defaults
    if "data_region" in entry:
        value = entry["data_region"]
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z]{2}", value):
            raise CatalogError(
                f"{where}.data_region: expected an ISO 3166-1 alpha-2 code like ru, got {value!r}"
            )
        region = value.lower()
    if "stores_prompts" in entry:
        value = entry["stores_prompts"]
        if not isinstance(value, bool):
            raise CatalogError(f"{where}.stores_prompts: expected true or false, got {value!r}")
        stores = value
    return region, stores


def _parameters(value: Any, where: str) -> list[str] | None:
    """Validate a ``supported_parameters`` list (None: the provider's defaults)."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise CatalogError(f"{where}: expected a list of parameter names")
    unknown = sorted(set(value) - PARAMETERS)
    if unknown:
        raise CatalogError(
            f"{where}: unknown parameter(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(PARAMETERS))}"
        )
    return sorted(set(value))


def _row(obj: Any) -> list[Any]:
    """Return the stored fields of ``obj``: equal before and after, nothing to write."""
    return [getattr(obj, f.attname) for f in obj._meta.concrete_fields]


def _full_clean(obj: Any, where: str) -> None:
    try:
        obj.full_clean(validate_unique=False)
    except ValidationError as exc:
        raise CatalogError(f"{where}: {exc.message_dict}") from None


def parse_catalog(text: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise CatalogError(f"not valid YAML: {exc}") from None
    return _check_fields(data, {"providers", "models"}, "catalog")


@transaction.atomic
def catalog_load(data: dict[str, Any]) -> CatalogLoadResult:
    """Upsert providers, models and deployments from a parsed catalog.

    Idempotent: loading the same file twice changes nothing. Managed rows
    that the file no longer lists are disabled, not deleted, so usage
    records keep their references.
    """
    providers_seen: dict[str, Provider] = {}
    # Per provider: the data_region / stores_prompts its deployments inherit.
    provider_residency: dict[str, tuple[str, bool]] = {}
    for i, raw in enumerate(data.get("providers") or []):
        where = f"providers[{i}]"
        entry = _check_fields(raw, _PROVIDER_FIELDS, where)
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise CatalogError(f"{where}: 'name' is required")
        if entry.get("kind") not in PROVIDER_KINDS:
            raise CatalogError(
                f"{where}: 'kind' must be one of {', '.join(sorted(PROVIDER_KINDS))}"
            )
        if name in providers_seen:
            raise CatalogError(f"{where}: provider {name!r} is listed twice")
        options = entry.get("options") or {}
        if not isinstance(options, dict):
            raise CatalogError(f"{where}.options: expected a mapping")
        provider = Provider.objects.filter(name=name).first() or Provider(name=name)
        provider.kind = entry["kind"]
        provider.base_url = entry.get("base_url") or ""
        provider.api_key_env = entry.get("api_key_env") or ""
        provider.options = options
        provider.enabled = bool(entry.get("enabled", True))
        provider.managed = True
        _full_clean(provider, where)
        provider.save()
        providers_seen[name] = provider
        provider_residency[name] = _residency(
            entry,
            (
                residency.default_region(provider.kind),
                residency.default_stores_prompts(provider.kind, options),
            ),
            where,
        )

    models_seen: set[str] = set()
    fallback_refs: list[tuple[str, str]] = []
    # Every row read once up front; unchanged rows are not written (issue 19:
    # each gateway pod loads the file at start, and 1,000 models x 3
    # deployments took ~15,000 queries and 36 CPU-s per start, over the
    # bench's 90 s readiness limit on a busy box).
    known_models = {m.model_id: m for m in Model.objects.all()}
    known_deployments: dict[int, list[Deployment]] = {}
    for existing in Deployment.objects.all():
        known_deployments.setdefault(existing.model_id, []).append(existing)
    to_disable: list[int] = []
    # Existing models that changed: one UPDATE per batch at the end (the
    # table's version bump below covers them; bulk_update sends no signal).
    changed_models: list[Model] = []
    now = timezone.now()
    try:
        model_entries = expand_versions(data.get("models") or [])
    except CatalogVersionError as exc:
        raise CatalogError(str(exc)) from None
    for i, raw in enumerate(model_entries):
        where = f"models[{i}]"
        entry = _check_fields(raw, _MODEL_FIELDS, where)
        model_id = entry.get("id")
        if not isinstance(model_id, str) or not model_id:
            raise CatalogError(f"{where}: 'id' is required")
        if model_id in models_seen:
            raise CatalogError(f"{where}: model {model_id!r} is listed twice")
        models_seen.add(model_id)
        pricing = entry.get("pricing") or {}
        if not isinstance(pricing, dict) or set(pricing) - {"prompt", "completion"}:
            raise CatalogError(f"{where}.pricing: expected {{prompt, completion}}")
        model = known_models.get(model_id) or Model(model_id=model_id)
        before = _row(model)
        model.display_name = entry.get("name") or ""
        model.type = entry.get("type") or Model.Type.CHAT
        model.context_length = entry.get("context_length")
        model.prompt_price = _price(pricing.get("prompt"), f"{where}.pricing.prompt")
        model.completion_price = _price(pricing.get("completion"), f"{where}.pricing.completion")
        model.enabled = bool(entry.get("enabled", True))
        model.deprecated = bool(entry.get("deprecated", False))
        model.version_since = entry.get("since")
        model.version_until = entry.get("until")
        model.upstream_version = str(entry.get("model_version") or "")
        fallbacks = entry.get("fallbacks") or []
        if not isinstance(fallbacks, list) or not all(isinstance(f, str) for f in fallbacks):
            raise CatalogError(f"{where}.fallbacks: expected a list of model ids")
        model.fallbacks = fallbacks
        limits = entry.get("limits") or {}
        if not isinstance(limits, dict) or set(limits) - {"rpm", "tpm", "concurrency"}:
            raise CatalogError(f"{where}.limits: expected {{rpm, tpm, concurrency}}")
        model.key_rpm_limit = limits.get("rpm")
        model.key_tpm_limit = limits.get("tpm")
        model.key_concurrency_limit = limits.get("concurrency")
        model.managed = True
        _full_clean(model, where)
        if model.pk is None:
            model.save()
        elif _row(model) != before:
            model.updated_at = now
            changed_models.append(model)
        fallback_refs.extend((where, f) for f in fallbacks)

        if fallbacks and not any(k in entry for k in ("deployments", "provider", "upstream")):
            # An alias: served only through its fallbacks.
            Deployment.objects.filter(model=model).update(enabled=False)
            continue
        if "deployments" in entry:
            if "provider" in entry or "upstream" in entry:
                raise CatalogError(f"{where}: give either provider/upstream or deployments")
            deployments = entry["deployments"]
            if not isinstance(deployments, list) or not deployments:
                raise CatalogError(f"{where}.deployments: expected a non-empty list")
        else:
            deployments = [
                {
                    "provider": entry.get("provider"),
                    "upstream": entry.get("upstream"),
                    **{k: entry[k] for k in _RESIDENCY_FIELDS if k in entry},
                    "supported_parameters": entry.get("supported_parameters"),
                }
            ]
        keep: list[int] = []
        for j, raw_dep in enumerate(deployments):
            dep_where = f"{where}.deployments[{j}]" if "deployments" in entry else where
            dep = _check_fields(raw_dep, _DEPLOYMENT_FIELDS, dep_where)
            provider_name = dep.get("provider")
            provider_obj = providers_seen.get(provider_name) if provider_name else None
            if provider_obj is None:
                provider_obj = Provider.objects.filter(name=provider_name).first()
            if provider_obj is None:
                raise CatalogError(f"{dep_where}: unknown provider {provider_name!r}")
            upstream = dep.get("upstream")
            if not isinstance(upstream, str) or not upstream:
                raise CatalogError(f"{dep_where}: 'upstream' is required")
            inherited = provider_residency.get(provider_obj.name) or (
                residency.default_region(provider_obj.kind),
                residency.default_stores_prompts(provider_obj.kind, provider_obj.options or {}),
            )
            data_region, stores_prompts = _residency(dep, inherited, dep_where)
            defaults = {
                "priority": int(dep.get("priority", j)),
                "weight": int(dep.get("weight", 1)),
                "enabled": bool(dep.get("enabled", True)),
                "data_region": data_region,
                "stores_prompts": stores_prompts,
                "supported_parameters": _parameters(
                    dep.get("supported_parameters"), f"{dep_where}.supported_parameters"
                ),
            }
            current = next(
                (
                    d
                    for d in known_deployments.get(model.pk, ())
                    if d.provider_id == provider_obj.pk and d.upstream == upstream
                ),
                None,
            )
            if current is not None and all(
                getattr(current, name) == value for name, value in defaults.items()
            ):
                keep.append(current.pk)
                continue
            # New or changed: the locking upsert, as concurrent loads need.
            deployment, _created = Deployment.objects.update_or_create(
                model=model, provider=provider_obj, upstream=upstream, defaults=defaults
            )
            keep.append(deployment.pk)
        to_disable += [
            d.pk for d in known_deployments.get(model.pk, ()) if d.enabled and d.pk not in keep
        ]

    if to_disable:
        Deployment.objects.filter(pk__in=to_disable).update(enabled=False)
    if changed_models:
        fields = [f.name for f in Model._meta.concrete_fields if not f.primary_key]
        Model.objects.bulk_update(changed_models, fields, batch_size=500)

    for where, target in fallback_refs:
        if target not in models_seen and not Model.objects.filter(model_id=target).exists():
            raise CatalogError(f"{where}.fallbacks: unknown model {target!r}")
    retired = (
        Model.objects.filter(managed=True, enabled=True)
        .exclude(model_id__in=models_seen)
        .update(enabled=False)
    )
    retired += (
        Provider.objects.filter(managed=True, enabled=True)
        .exclude(name__in=providers_seen)
        .update(enabled=False)
    )
    # update() sends no signals: bump the version so workers reload.
    transaction.on_commit(catalog_version_bump)
    return CatalogLoadResult(
        providers=len(providers_seen), models=len(models_seen), retired=retired
    )


def catalog_load_file(path: str | Path) -> CatalogLoadResult:
    """Load the catalog YAML at ``path``; raise CatalogError if it is malformed."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(f"cannot read {path}: {exc}") from None
    result = catalog_load(parse_catalog(text))
    logger.info(
        "catalog loaded",
        extra={"path": str(path), "providers": result.providers, "models": result.models},
    )
    return result
