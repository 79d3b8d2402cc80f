"""Stored ``/v1/responses`` results: save, read and delete per team, prune.

Only the caller's team is ever searched, and rows past retention are
treated as gone even before the hourly prune removes them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from providers.base import Message, ToolCall
from routing.models import StoredResponse

PRUNE_BATCH = 5_000


def message_to_json(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": call.id, "name": call.name, "arguments": call.arguments}
            for call in message.tool_calls
        ]
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    return out


def message_from_json(data: dict[str, Any]) -> Message:
    return Message(
        role=data["role"],
        content=data.get("content"),
        tool_calls=[
            ToolCall(id=call["id"], name=call["name"], arguments=call["arguments"])
            for call in data.get("tool_calls") or ()
        ],
        tool_call_id=data.get("tool_call_id"),
    )


def _cutoff(now: datetime | None = None) -> datetime | None:
    days = settings.XROUTER_RESPONSES_RETENTION_DAYS
    if days <= 0:
        return None
    return (now or timezone.now()) - timedelta(days=days)


def _visible(team_id: int) -> Any:
    rows = StoredResponse.objects.filter(team_id=team_id)
    cutoff = _cutoff()
    return rows if cutoff is None else rows.filter(created_at__gte=cutoff)


def response_save(
    *,
    response_id: str,
    team_id: int,
    key_id: int | None,
    model: str,
    previous_response_id: str,
    conversation: list[Message],
    body: dict[str, Any],
) -> None:
    StoredResponse.objects.create(
        response_id=response_id,
        team_id=team_id,
        key_id=key_id,
        model=model,
        previous_response_id=previous_response_id,
        conversation=[message_to_json(m) for m in conversation],
        body=body,
        created_at=timezone.now(),
    )


def response_get(*, team_id: int, response_id: str) -> StoredResponse | None:
    return _visible(team_id).filter(response_id=response_id).first()


def response_conversation(*, team_id: int, response_id: str) -> list[Message] | None:
    """The messages a continuation of ``response_id`` starts from, or None."""
    row = (
        _visible(team_id).filter(response_id=response_id).values_list("conversation", flat=True)
    ).first()
    return None if row is None else [message_from_json(m) for m in row]


def response_delete(*, team_id: int, response_id: str) -> bool:
    deleted, _by_model = _visible(team_id).filter(response_id=response_id).delete()
    return deleted > 0


def responses_prune(*, now: datetime | None = None, batch_size: int = PRUNE_BATCH) -> int:
    """Delete stored responses past retention in batches; return how many."""
    cutoff = _cutoff(now)
    if cutoff is None:
        return 0
    total = 0
    while True:
        ids = list(
            StoredResponse.objects.filter(created_at__lt=cutoff)
            .order_by("pk")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            return total
        deleted, _by_model = StoredResponse.objects.filter(pk__in=ids).delete()
        total += deleted
