"""Write operations on API keys: create, revoke, rotate, update.

Each returns what the caller needs and leaves the key cache consistent
(the cache is evicted by the ``post_save`` hook in :mod:`keys.auth`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts import roles
from accounts.audit.services import audit_diff, audit_record, audit_snapshot
from accounts.models import AuditEvent, BudgetPeriod, Team, User
from keys import tokens
from keys.models import ApiKey

# A runaway script cannot fill the table: creation stops at this many
# unrevoked keys per team (OWASP API6, sensitive business flows).
MAX_UNREVOKED_KEYS_PER_TEAM = 1000

# Fields api_key_update may change; anything else is refused.
UPDATABLE_FIELDS = frozenset(
    {
        "name",
        "pii_mode",
        "expires_at",
        "disabled",
        "allowed_models",
        "rpm_limit",
        "tpm_limit",
        "budget_rub",
        "budget_period",
        "concurrency_limit",
        "model_limits",
    }
)
_MODEL_LIMIT_NAMES = frozenset({"rpm", "tpm", "concurrency"})
# What the audit log records of a key: limits apart from other settings.
LIMIT_FIELDS = (
    "rpm_limit",
    "tpm_limit",
    "concurrency_limit",
    "budget_rub",
    "budget_period",
    "model_limits",
)
SETTING_FIELDS = ("name", "kind", "pii_mode", "expires_at", "disabled", "allowed_models")


def _audit_key(api_key: ApiKey, action: str, changes: dict[str, Any], actor: User | None) -> None:
    audit_record(
        team=api_key.team,
        action=action,
        target_type="key",
        target_id=str(api_key.public_id),
        target_label=f"{api_key.name} ({api_key.masked})",
        changes=changes,
        actor=actor,
    )


@dataclass(frozen=True)
class CreatedKey:
    """A newly created key and its plaintext, which is never stored."""

    api_key: ApiKey
    plaintext: str


def _clean_models(models: list[str] | None) -> list[str]:
    cleaned = []
    for model in models or []:
        if not isinstance(model, str) or not model.strip():
            raise ValidationError({"allowed_models": "each model id must be a non-empty string"})
        cleaned.append(model.strip())
    return sorted(set(cleaned))


def _clean_model_limits(limits: dict[str, dict[str, int]] | None) -> dict[str, dict[str, int]]:
    """Validate ``{"model id": {"rpm"|"tpm"|"concurrency": positive int}}``."""
    if limits is None:
        return {}
    if not isinstance(limits, dict):
        raise ValidationError({"model_limits": "expected an object keyed by model id"})
    cleaned: dict[str, dict[str, int]] = {}
    for model, values in limits.items():
        if not isinstance(model, str) or not model.strip() or not isinstance(values, dict):
            raise ValidationError({"model_limits": "expected {model id: {rpm, tpm, concurrency}}"})
        unknown = set(values) - _MODEL_LIMIT_NAMES
        if unknown:
            raise ValidationError(
                {"model_limits": f"unknown limit(s): {', '.join(sorted(unknown))}"}
            )
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(
                    {"model_limits": f"{model}.{name} must be a positive integer"}
                )
        cleaned[model.strip()] = dict(values)
    return cleaned


@transaction.atomic
def api_key_create(
    *,
    team: Team,
    name: str,
    created_by: User | None = None,
    expires_at: datetime | None = None,
    allowed_models: list[str] | None = None,
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    budget_rub: Decimal | None = None,
    budget_period: str = BudgetPeriod.MONTHLY,
    concurrency_limit: int | None = None,
    model_limits: dict[str, dict[str, int]] | None = None,
    env: str | None = None,
    kind: str = ApiKey.Kind.STANDARD,
    pii_mode: str = "",
    playground: bool = False,
    audit: bool = True,
) -> CreatedKey:
    """Create a key for ``team`` and return it with its plaintext (shown once).

    ``kind`` is ``ApiKey.Kind.MANAGEMENT`` for a key that calls the
    management API instead of the gateway. ``created_by`` is the person
    asking; their current role in ``team`` must allow creating keys, else
    :class:`accounts.roles.RoleDenied`. None means the system itself (a
    management command, or a management key acting for the team).
    ``playground`` marks a key minted by the dashboard's playground
    (:func:`keys.playground.services.playground_key_mint`); it must expire.
    The audit log records the new key unless ``audit`` is False (rotation
    records one event of its own).
    """
    if kind not in (ApiKey.Kind.STANDARD, ApiKey.Kind.MANAGEMENT):
        # Hidden ``oauth`` keys are made by consent (accounts.oauth.services).
        raise ValidationError({"kind": f"unknown key kind {kind!r}"})
    if created_by is not None:
        # The one role check for every key a person creates: dashboard,
        # REST, rotation and the /auth exchange (accounts.roles).
        roles.credential_authorize(user=created_by, team=team, action=roles.Action.KEY_CREATE)
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "the expiry must be in the future"})
    if playground and (kind != ApiKey.Kind.STANDARD or expires_at is None):
        raise ValidationError("a playground key is a standard key with an expiry")
    if (
        ApiKey.objects.filter(team=team, revoked_at__isnull=True).count()
        >= MAX_UNREVOKED_KEYS_PER_TEAM
    ):
        raise ValidationError(
            f"a team may hold at most {MAX_UNREVOKED_KEYS_PER_TEAM} keys; revoke unused ones"
        )
    new = tokens.generate(env or settings.XROUTER_KEY_ENV)
    api_key = ApiKey(
        team=team,
        name=name,
        kind=kind,
        created_by=created_by,
        key_hash=new.digest,
        prefix=new.prefix,
        last4=new.last4,
        expires_at=expires_at,
        allowed_models=_clean_models(allowed_models),
        rpm_limit=rpm_limit,
        tpm_limit=tpm_limit,
        budget_rub=budget_rub,
        budget_period=budget_period,
        concurrency_limit=concurrency_limit,
        model_limits=_clean_model_limits(model_limits),
        pii_mode=pii_mode,
        playground=playground,
    )
    api_key.full_clean()
    api_key.save()
    if audit:
        _audit_key(
            api_key,
            AuditEvent.Action.KEY_CREATED,
            audit_diff({}, audit_snapshot(api_key, SETTING_FIELDS + LIMIT_FIELDS)),
            created_by,
        )
    return CreatedKey(api_key=api_key, plaintext=new.plaintext)


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey, audit: bool = True) -> ApiKey:
    """Revoke ``api_key`` for good; revoking twice keeps the first time."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
        if audit:
            _audit_key(
                api_key,
                AuditEvent.Action.KEY_REVOKED,
                {"revoked_at": {"before": None, "after": api_key.revoked_at}},
                None,
            )
    return api_key


@transaction.atomic
def api_key_rotate(*, api_key: ApiKey, created_by: User | None = None) -> CreatedKey:
    """Issue a new secret with the same settings and revoke the old key."""
    locked = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    if locked.revoked_at is not None:
        raise ValidationError("a revoked key cannot be rotated")
    if locked.playground:
        raise ValidationError(
            "a playground key cannot be rotated; the playground mints a new one when needed"
        )
    if locked.kind == ApiKey.Kind.OAUTH:
        raise ValidationError(
            "an OAuth app's access has no secret to rotate; revoke it and let the app ask again"
        )
    created = api_key_create(
        team=locked.team,
        name=locked.name,
        created_by=created_by or locked.created_by,
        expires_at=locked.expires_at if not locked.is_expired() else None,
        allowed_models=list(locked.allowed_models),
        rpm_limit=locked.rpm_limit,
        tpm_limit=locked.tpm_limit,
        budget_rub=locked.budget_rub,
        budget_period=locked.budget_period,
        concurrency_limit=locked.concurrency_limit,
        model_limits=dict(locked.model_limits),
        env=locked.prefix.split("_")[1],
        kind=locked.kind,
        pii_mode=locked.pii_mode,
        audit=False,
    )
    api_key_revoke(api_key=locked, audit=False)
    _audit_key(
        locked,
        AuditEvent.Action.KEY_ROTATED,
        {"key": {"before": locked.masked, "after": created.api_key.masked}},
        created_by,
    )
    api_key.refresh_from_db()
    return created


@transaction.atomic
def api_key_update(*, api_key: ApiKey, **changes: Any) -> ApiKey:
    """Change the given settings of ``api_key`` (limits, models, expiry...).

    The audit log gets one event for changed limits and one for other
    changed settings, each with only the fields that changed.
    """
    unknown = set(changes) - UPDATABLE_FIELDS
    if unknown:
        raise ValidationError(f"these fields cannot be changed: {', '.join(sorted(unknown))}")
    if api_key.revoked_at is not None:
        raise ValidationError("a revoked key cannot be changed")
    if "allowed_models" in changes:
        changes["allowed_models"] = _clean_models(changes["allowed_models"])
    if "model_limits" in changes:
        changes["model_limits"] = _clean_model_limits(changes["model_limits"])
    expires_at = changes.get("expires_at")
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "the expiry must be in the future"})
    if (
        api_key.playground
        and "expires_at" in changes
        and api_key.expires_at is not None
        and (expires_at is None or expires_at > api_key.expires_at)
    ):
        # A short life is what makes a key held by a browser tab acceptable.
        raise ValidationError(
            {"expires_at": "a playground key's expiry can only be brought forward"}
        )
    before = audit_snapshot(api_key, SETTING_FIELDS + LIMIT_FIELDS)
    for field, value in changes.items():
        setattr(api_key, field, value)
    api_key.full_clean()
    api_key.save(update_fields=sorted(changes))
    after = audit_snapshot(api_key, SETTING_FIELDS + LIMIT_FIELDS)
    for action, fields in (
        (AuditEvent.Action.KEY_LIMITS_CHANGED, LIMIT_FIELDS),
        (AuditEvent.Action.KEY_UPDATED, SETTING_FIELDS),
    ):
        diff = audit_diff({f: before[f] for f in fields}, {f: after[f] for f in fields})
        if diff:
            _audit_key(api_key, action, diff, None)
    return api_key
