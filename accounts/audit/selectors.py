"""Read the audit log of one team, newest first, filtered."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import AuditEvent, Team


def audit_event_list(*, team: Team, action: str = "", actor: str = "") -> QuerySet[AuditEvent]:
    """Return ``team``'s events, newest first; ``actor`` matches the actor's label."""
    events = AuditEvent.objects.filter(team=team)
    if action:
        events = events.filter(action=action)
    if actor:
        events = events.filter(actor_label__icontains=actor)
    return events.order_by("-created_at", "-id")


def audit_actor_labels(*, team: Team, limit: int = 200) -> list[str]:
    """Return the distinct actor labels of ``team``'s events (for the filter)."""
    labels = (
        AuditEvent.objects.filter(team=team)
        .exclude(actor_label="")
        .order_by("actor_label")
        .values_list("actor_label", flat=True)
        .distinct()
    )
    return list(labels[:limit])
