"""Usage events stay readable across a rolling deploy, in both directions.

Readers ignore fields they do not know (forward compatible), and an entry's
``e`` field holds only what the last strict reader (before commit fd90aba)
knew, so a worker of that release writes the record instead of dropping it.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import orjson
import pytest

from routing.models import UsageRecord
from routing.usage import records as usage

# The UsageEvent fields of the release before fd90aba, whose reader was
# ``UsageEvent(**orjson.loads(fields[b"e"]))`` and raised on any other key.
OLD_READER_FIELDS = (
    "request_id created team_id key_id endpoint requested_model served_model "
    "model_version provider deployment_id attempts prompt_tokens completion_tokens "
    "cached_tokens cost_rub status error_code latency_ms ttft_ms stream "
    "stream_complete oauth_app"
).split()


def _old_reader_event() -> type:
    """A strict dataclass with the old release's fields, as its reader was."""
    return dataclasses.make_dataclass(
        "OldUsageEvent",
        [(name, Any, dataclasses.field(default=None)) for name in OLD_READER_FIELDS],
    )


def _event(**fields: Any) -> usage.UsageEvent:
    base: dict[str, Any] = {
        "request_id": f"req-compat-{time.monotonic_ns()}",
        "created": time.time(),
        "team_id": 1,
        "key_id": None,
        "endpoint": "chat",
        "requested_model": "local/mock",
        "prompt_tokens": 7,
        "completion_tokens": 3,
    }
    base.update(fields)
    return usage.UsageEvent(**base)


def test_base_fields_are_exactly_what_the_old_reader_knew() -> None:
    assert frozenset(OLD_READER_FIELDS) == usage.BASE_FIELDS


def test_an_event_with_an_unknown_field_decodes_without_it() -> None:
    raw = orjson.loads(orjson.dumps(_event(finish_reason="stop")))
    raw["added_by_a_later_release"] = {"nested": [1, 2]}
    event = usage.UsageEvent.from_stream_fields({b"e": orjson.dumps(raw)})
    assert event.finish_reason == "stop"
    assert event.prompt_tokens == 7
    assert not hasattr(event, "added_by_a_later_release")


def test_a_stream_entry_with_unknown_fields_in_both_parts_decodes() -> None:
    fields = _event(finish_reason="content_filter", generation_id="gen-1").to_stream_fields()
    e = orjson.loads(fields["e"])
    x = orjson.loads(fields["x"])
    e["future_base"] = 1
    x["future_extension"] = "v"
    event = usage.UsageEvent.from_stream_fields({b"e": orjson.dumps(e), b"x": orjson.dumps(x)})
    assert (event.finish_reason, event.generation_id, event.prompt_tokens) == (
        "content_filter",
        "gen-1",
        7,
    )


def test_the_old_strict_reader_reads_a_new_entry() -> None:
    fields = _event(
        finish_reason="content_filter", generation_id="gen-2", pii_counts={"email": 1}
    ).to_stream_fields()
    old = _old_reader_event()(**orjson.loads(fields["e"]))  # raised TypeError before
    assert old.prompt_tokens == 7
    assert "finish_reason" not in orjson.loads(fields["e"])
    assert orjson.loads(fields["x"])["finish_reason"] == "content_filter"


def test_an_entry_of_the_old_release_has_no_x_and_still_decodes() -> None:
    everything = orjson.loads(orjson.dumps(_event()))
    only_e = {k: v for k, v in everything.items() if k in OLD_READER_FIELDS}
    event = usage.UsageEvent.from_stream_fields({b"e": orjson.dumps(only_e)})
    assert event.finish_reason == ""
    assert event.key == event.request_id


def test_a_non_object_extension_is_unreadable() -> None:
    fields = _event().to_stream_fields()
    with pytest.raises(ValueError, match="x field of a usage entry is not an object"):
        usage.UsageEvent.from_stream_fields({b"e": fields["e"], b"x": b"[1]"})


def test_the_consumer_writes_an_entry_that_carries_a_field_it_does_not_know(team: Any) -> None:
    sink = usage.stream_sink()
    if sink is None:
        pytest.skip("needs REDIS_URL (make test sets it)")
    event = _event(
        team_id=team.pk,
        finish_reason="content_filter",
        generation_id=f"gen-{time.monotonic_ns()}",
    )
    fields = event.to_stream_fields()
    x = orjson.loads(fields["x"])
    x["field_of_a_newer_release"] = 42
    sink.client.xadd(usage.STREAM_KEY, {"e": fields["e"], "x": orjson.dumps(x)})
    while sink.consume_once(block_ms=10):
        pass
    row = UsageRecord.objects.get(generation_id=event.generation_id)
    assert (row.finish_reason, row.prompt_tokens) == ("content_filter", 7)
