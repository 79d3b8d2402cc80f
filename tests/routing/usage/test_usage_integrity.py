"""Upstream usage is checked, and one bad row never costs its batch.

The attack: a provider claims 10^12 tokens. Before, the PostgreSQL insert
failed, so its whole batch (22 good records) was never written and was
retried forever.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import orjson
import pytest
import requests

from providers.base import Usage
from routing.models import UsageRecord
from routing.usage import pricing
from routing.usage import records as usage
from tests.conftest import LiveGateway
from tests.hostile_upstream import Reply, completion, hostile_upstream


def _event(n: int, **fields: Any) -> usage.UsageEvent:
    values: dict[str, Any] = {
        "request_id": f"corr-{n}",
        "generation_id": usage.new_generation_id(),
        "created": time.time(),
        "key_id": None,
        "endpoint": "chat",
        "requested_model": "local/mock",
        "prompt_tokens": 10,
        "completion_tokens": 20,
        "cost_rub": "0.035",
    }
    values.update(fields)
    return usage.UsageEvent(**values)


def test_one_absurd_row_does_not_cost_its_batch(team: Any) -> None:
    """22 good rows and one claiming 10^12 tokens: all 23 are written, once."""
    good = [_event(n, team_id=team.pk) for n in range(22)]
    bad = _event(99, team_id=team.pk, prompt_tokens=10**12, cost_rub="100000000000.5")
    batch = [*good[:11], bad, *good[11:]]
    assert usage.write_events(batch) == 23
    rows = {r.generation_id: r for r in UsageRecord.objects.all()}
    assert set(rows) == {e.generation_id for e in batch}
    for event in good:
        row = rows[event.generation_id]
        assert (row.prompt_tokens, row.cost_rub, row.usage_anomaly) == (10, Decimal("0.035"), "")
    forced = rows[bad.generation_id]
    assert forced.prompt_tokens == 2**31 - 1
    assert forced.cost_rub == Decimal("9999999999.999999")
    assert forced.usage_anomaly == "forced into range: prompt_tokens, cost_rub"
    # Redelivered (the stream consumer is at-least-once): nothing doubles.
    usage.write_events(batch)
    assert UsageRecord.objects.count() == 23


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_claiming_a_trillion_tokens_is_clamped_and_flagged(
    live_server: Any, transactional_db: None, load_catalog: Any, make_key: Any, stream: bool
) -> None:
    """The client is shown and billed a bounded count; the record says why."""
    from tests.conftest import openai_catalog

    with hostile_upstream() as upstream:
        claim = completion(prompt_tokens=10**12, completion_tokens=10**12)
        if stream:
            chunk = {
                "id": "chatcmpl-hostile",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "gpt-mock",
                "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}],
            }
            tail = {**chunk, "choices": [], "usage": claim["usage"]}
            upstream.reply = Reply(
                stream=[
                    b"data: " + orjson.dumps(chunk) + b"\n\n",
                    b"data: " + orjson.dumps(tail) + b"\n\n",
                    b"data: [DONE]\n\n",
                ]
            )
        else:
            upstream.reply = Reply(body=claim)
        load_catalog(openai_catalog(upstream.base_url))
        gateway = LiveGateway(live_server.url, make_key().plaintext)
        body: dict[str, Any] = {
            "model": "local/mock",
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "hi"}],
        }
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        payload = orjson.dumps(body)
        response = requests.post(
            gateway.url + "/v1/chat/completions", data=payload, headers=gateway.headers, timeout=30
        )
    assert response.status_code == 200, response.text
    if stream:
        events = [
            orjson.loads(line[6:])
            for line in response.text.splitlines()
            if line.startswith("data: {")
        ]
        shown = events[-1]["usage"]
    else:
        shown = response.json()["usage"]
    # At most one token per byte of the body (plus slack), at most max_tokens.
    prompt_cap = len(payload) + 1024
    assert (shown["prompt_tokens"], shown["completion_tokens"]) == (prompt_cap, 50)

    sink = usage.stream_sink()
    if sink is not None:
        while sink.consume_once(block_ms=10):
            pass
    usage.flush_all()
    record = UsageRecord.objects.get()
    assert (record.prompt_tokens, record.completion_tokens) == (prompt_cap, 50)
    assert record.cost_rub == pricing.cost_rub(
        Decimal("0.5"), Decimal("1.5"), Usage(prompt_cap, 50)
    )
    assert record.usage_anomaly == (
        f"clamped: prompt_tokens={10**12} above {prompt_cap}; completion_tokens={10**12} above 50"
    )
    assert record.upstream_id == "chatcmpl-hostile"
