"""Read helpers for the dashboard and the management API.

Every lookup takes the team: a key of another team is simply not found,
which is what makes a guessed id answer 404 rather than 403.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Max, Q, QuerySet
from django.utils import timezone

from accounts.models import Team
from keys.models import ApiKey

# The key form and API validate model ids against the live catalog.
from routing.table import catalog_model_ids as catalog_model_ids
from routing.table import catalog_model_list as catalog_model_list

KEY_STATUSES = ("active", "revoked", "expired", "disabled")


def api_key_list(
    *, team: Team, search: str = "", status: str = "", now: datetime | None = None
) -> QuerySet[ApiKey]:
    """Return the team's keys, newest first, filtered by name/prefix and status.

    ``status`` is one of :data:`KEY_STATUSES` or empty for all; it follows
    :meth:`ApiKey.status` (revoked wins over expired, expired over disabled).
    """
    now = now or timezone.now()
    keys = ApiKey.objects.filter(team=team).select_related("created_by")
    if search:
        keys = keys.filter(Q(name__icontains=search) | Q(prefix__icontains=search))
    expired = Q(expires_at__isnull=False, expires_at__lte=now)
    if status == "active":
        keys = keys.active(now)
    elif status == "revoked":
        keys = keys.filter(revoked_at__isnull=False)
    elif status == "expired":
        keys = keys.filter(expired, revoked_at__isnull=True)
    elif status == "disabled":
        keys = keys.filter(disabled=True, revoked_at__isnull=True).exclude(expired)
    return keys.order_by("-created_at", "-pk")


def api_key_get(*, team: Team, public_id: uuid.UUID | str) -> ApiKey | None:
    """Return the team's key with ``public_id``, or None (also for other teams' keys)."""
    try:
        public_id = uuid.UUID(str(public_id))
    except ValueError:
        return None
    return ApiKey.objects.filter(team=team, public_id=public_id).first()


@dataclass(frozen=True)
class KeySummary:
    """Counts of a team's keys by status and the latest use of any of them."""

    total: int
    active: int
    revoked: int
    expired: int
    disabled: int
    used_last_24h: int
    last_used_at: datetime | None


def api_key_summary(*, team: Team, now: datetime | None = None) -> KeySummary:
    """Return :class:`KeySummary` for ``team`` in one query."""
    now = now or timezone.now()
    not_revoked = Q(revoked_at__isnull=True)
    expired = Q(expires_at__isnull=False, expires_at__lte=now)
    row = ApiKey.objects.filter(team=team).aggregate(
        total=Count("pk"),
        active=Count("pk", filter=not_revoked & Q(disabled=False) & ~expired),
        revoked=Count("pk", filter=~not_revoked),
        expired=Count("pk", filter=not_revoked & expired),
        disabled=Count("pk", filter=not_revoked & ~expired & Q(disabled=True)),
        used_last_24h=Count("pk", filter=Q(last_used_at__gte=now - timedelta(days=1))),
        last_used_at=Max("last_used_at"),
    )
    return KeySummary(**row)
