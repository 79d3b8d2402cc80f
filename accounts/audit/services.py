"""Write the audit log: record a change, compute its diff, purge old events.

Usage, inside the transaction that makes the change::

    with transaction.atomic():
        before = audit_snapshot(team, TEAM_FIELDS)
        ...save the team...
        audit_record(
            team=team,
            action=AuditEvent.Action.TEAM_LIMITS_CHANGED,
            target_type="team",
            target_id=team.slug,
            target_label=team.name,
            changes=audit_diff(before, audit_snapshot(team, TEAM_FIELDS)),
        )

The actor is the ``actor`` argument, else the user or management key of
the request being served (:mod:`accounts.audit.context`), else the system.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.audit.context import current_request
from accounts.models import AuditEvent, Team, User
from xrouter_site.client_ip import client_address

logger = logging.getLogger(__name__)

# Never written into ``changes``, whatever a caller passes: digests and
# secrets stay out of the log (a key's display prefix is not one).
SECRET_FIELDS = frozenset(
    {"key_hash", "token_hash", "code_hash", "password", "client_secret", "plaintext", "token"}
)
# Rows deleted per statement by the purge, so it never holds a long lock.
PURGE_BATCH = 5000


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"{value:.2f}" if value == value.quantize(Decimal("0.01")) else str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return sorted(_jsonable(v) for v in value)
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def audit_snapshot(instance: Any, fields: Iterable[str]) -> dict[str, Any]:
    """Return ``{field: value}`` of ``instance``, in the log's JSON form."""
    return {name: _jsonable(getattr(instance, name)) for name in fields}


def audit_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``{field: {"before": b, "after": a}}`` for the fields that differ."""
    changes: dict[str, Any] = {}
    for name in sorted(set(before) | set(after)):
        old, new = _jsonable(before.get(name)), _jsonable(after.get(name))
        if old != new and name not in SECRET_FIELDS:
            changes[name] = {"before": old, "after": new}
    return changes


def _actor(actor: User | None) -> tuple[User | None, str, str]:
    """Return (user, kind, label) of whoever is making the change."""
    if actor is not None:
        return actor, AuditEvent.ActorKind.USER, actor.get_username()
    request = current_request()
    user = getattr(request, "user", None) if request is not None else None
    if isinstance(user, User) and user.is_authenticated:
        return user, AuditEvent.ActorKind.USER, user.get_username()
    # keys.authentication.KeyUser: a management key acting for its team.
    principal = getattr(user, "principal", None)
    if principal is not None:
        label = f"{principal.name} ({principal.prefix}…)"
        return None, AuditEvent.ActorKind.MANAGEMENT_KEY, label[:200]
    return None, AuditEvent.ActorKind.SYSTEM, ""


def _client_ip() -> str | None:
    request = current_request()
    if request is None:
        return None
    address = client_address(request)
    return str(address) if address is not None else None


def audit_record(
    *,
    team: Team,
    action: str,
    target_type: str,
    target_id: str = "",
    target_label: str = "",
    changes: Mapping[str, Any] | None = None,
    actor: User | None = None,
) -> AuditEvent:
    """Write one audit event for a change to ``team``; return it.

    Call it inside the transaction of the change, so the event and the
    change commit or roll back together.
    """
    if action not in AuditEvent.Action.values:
        raise ValueError(f"unknown audit action {action!r}")
    user, kind, label = _actor(actor)
    clean = {k: v for k, v in _jsonable(dict(changes or {})).items() if k not in SECRET_FIELDS}
    return AuditEvent.objects.create(
        team=team,
        actor=user,
        actor_kind=kind,
        actor_label=label,
        client_ip=_client_ip(),
        action=action,
        target_type=target_type,
        target_id=str(target_id)[:64],
        target_label=str(target_label)[:200],
        changes=clean,
    )


def audit_purge(*, now: dt.datetime | None = None) -> int:
    """Delete events older than ``XROUTER_AUDIT_RETENTION_DAYS``; return how many.

    0 days keeps events forever. Deletes in batches of :data:`PURGE_BATCH`.
    """
    days = settings.XROUTER_AUDIT_RETENTION_DAYS
    if days <= 0:
        return 0
    cutoff = (now or timezone.now()) - dt.timedelta(days=days)
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(
                AuditEvent.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[
                    :PURGE_BATCH
                ]
            )
            if not ids:
                break
            deleted += AuditEvent.objects.filter(pk__in=ids).delete()[0]
    if deleted:
        logger.info("audit events purged", extra={"deleted": deleted, "days": days})
    return deleted
