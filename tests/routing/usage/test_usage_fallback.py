"""A record the Redis stream does not confirm is inserted by the request itself.

Buffering it in process instead lost it with a worker killed right after
answering: under a starved box the stream's 2 s group commit timed out and
``test_usage_durability`` found 2 of 296 answered requests without a record.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from routing.models import UsageRecord
from routing.usage import records as usage


def _event(request_id: str, team: Any) -> usage.UsageEvent:
    return usage.UsageEvent(
        request_id=request_id,
        created=time.time(),
        endpoint="chat",
        team_id=team.pk,
        key_id=None,
        requested_model="local/mock",
        served_model="local/mock",
        provider="local",
        prompt_tokens=10,
        completion_tokens=20,
        cost_rub="0.035",
        latency_ms=12.0,
    )


@pytest.fixture
def failing_stream(settings: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A stream sink whose every add times out, as on a starved box."""
    settings.XROUTER_USAGE_REDIS_URL = "redis://127.0.0.1:1/0"
    usage.reset()
    calls: list[str] = []

    def add(self: usage.StreamSink, event: usage.UsageEvent) -> None:
        calls.append(event.request_id)
        raise TimeoutError("the usage stream did not confirm the record in time")

    monkeypatch.setattr(usage.StreamSink, "add", add)
    yield calls
    usage.reset()


@pytest.mark.django_db(transaction=True)
def test_an_unconfirmed_record_is_in_the_database_when_record_returns(
    failing_stream: list[str], team: Any
) -> None:
    usage.record(_event("unconfirmed-1", team))

    assert failing_stream == ["unconfirmed-1"]
    # No flush: a SIGKILL right now would lose nothing.
    assert UsageRecord.objects.filter(request_id="unconfirmed-1").count() == 1
    assert len(usage.local_buffer()) == 0


@pytest.mark.django_db(transaction=True)
def test_a_late_stream_copy_of_a_directly_written_record_is_not_counted_twice(
    failing_stream: list[str], team: Any
) -> None:
    event = _event("unconfirmed-2", team)
    usage.record(event)
    # The batch that timed out reaches Redis after all and is consumed.
    usage.write_events([event])

    assert UsageRecord.objects.filter(request_id="unconfirmed-2").count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_in_process_buffer_is_the_last_resort(
    failing_stream: list[str], team: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def database_down(events: list[usage.UsageEvent]) -> int:
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(usage, "write_events", database_down)
    usage.record(_event("unconfirmed-3", team))

    assert len(usage.local_buffer()) == 1
    monkeypatch.undo()
    usage.flush_all()
    assert UsageRecord.objects.filter(request_id="unconfirmed-3").count() == 1
