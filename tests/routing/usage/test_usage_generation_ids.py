"""Gateway-issued generation ids: a client's X-Request-ID is never a key.

The attack: a client repeats one X-Request-ID (unbilled traffic, a budget
rebuilt from the record forgets the spend), and a second team reuses the
first team's id (to make that request vanish from its usage).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import orjson
import requests
from django.test import Client

from accounts.services import team_get_or_create
from keys.services import api_key_create
from routing.limits.plan import spent_micro
from routing.models import UsageRecord
from routing.usage import pricing
from routing.usage import records as usage
from tests.accounts.cast import Cast
from tests.conftest import LiveGateway

GENERATION = re.compile(r"^gen-\d{10}-[0-9A-Za-z]{20}$")


def _drain() -> list[UsageRecord]:
    sink = usage.stream_sink()
    if sink is not None:
        while sink.consume_once(block_ms=10):
            pass
    usage.flush_all()
    return list(UsageRecord.objects.order_by("id"))


def _chat(url: str, key: str, request_id: str, **body: Any) -> requests.Response:
    payload = {"model": "local/mock", "messages": [{"role": "user", "content": "hi"}], **body}
    return requests.post(
        url + "/v1/chat/completions",
        data=orjson.dumps(payload),
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "X-Request-ID": request_id,
        },
        timeout=30,
    )


def test_repeated_and_foreign_request_ids_each_leave_their_own_record(
    gateway: LiveGateway, team: Any
) -> None:
    """Same X-Request-ID from two teams, plain and streamed: every request counts."""
    rival_team = team_get_or_create(slug="rival", name="Rival")[0]
    rival = api_key_create(team=rival_team, name="rival")
    ours = [_chat(gateway.url, gateway.key, "dup-1") for _ in range(2)]
    ours.append(_chat(gateway.url, gateway.key, "dup-1", stream=True))
    theirs = _chat(gateway.url, rival.plaintext, "dup-1")
    responses = [*ours, theirs]
    assert [r.status_code for r in responses] == [200] * 4

    ids = [r.headers["X-Generation-Id"] for r in responses]
    assert all(GENERATION.match(i) for i in ids), ids
    assert len(set(ids)) == 4
    assert all(r.headers["X-Request-ID"] == "dup-1" for r in responses)
    for response in (ours[0], ours[1], theirs):
        assert response.json()["id"] == response.headers["X-Generation-Id"]
    events = [
        orjson.loads(line[6:]) for line in ours[2].text.splitlines() if line.startswith("data: {")
    ]
    assert events and {e["id"] for e in events} == {ours[2].headers["X-Generation-Id"]}

    records = _drain()
    assert sorted(r.generation_id for r in records) == sorted(ids)
    assert {r.correlation_id for r in records} == {"dup-1"}
    # The provider's ids are kept, never taken for ours.
    upstream_ids = {r.upstream_id for r in records}
    assert all(u.startswith("chatcmpl-") for u in upstream_ids), upstream_ids
    assert not upstream_ids & set(ids)

    # The budget rebuilt from the record sees all three of our requests.
    ours_cost = sum(r.cost_rub for r in records if r.team_id == team.pk)
    assert ours_cost > 0 and len([r for r in records if r.team_id == team.pk]) == 3
    assert spent_micro(team_id=team.pk, key_id=None, since=records[0].created_at) == (
        pricing.to_micro(Decimal(ours_cost))
    )

    # /api/v1/generation takes the generation id; each team sees only its own.
    auth = {"HTTP_AUTHORIZATION": f"Bearer {gateway.key}"}
    for generation in ids[:3]:
        found = Client().get("/api/v1/generation", {"id": generation}, **auth)
        assert found.status_code == 200
        data = found.json()["data"]
        assert data["id"] == generation and data["request_id"] == "dup-1"
    foreign = Client().get("/api/v1/generation", {"id": ids[3]}, **auth)
    assert foreign.status_code == 404
    # The correlation id is no key: it finds nothing there.
    assert Client().get("/api/v1/generation", {"id": "dup-1"}, **auth).status_code == 404
    rival_auth = {"HTTP_AUTHORIZATION": f"Bearer {rival.plaintext}"}
    assert Client().get("/api/v1/generation", {"id": ids[3]}, **rival_auth).status_code == 200


def test_request_log_search_finds_every_record_of_a_repeated_request_id(
    gateway: LiveGateway, cast: Cast
) -> None:
    """The dashboard search by X-Request-ID lists each request that sent it."""
    sent = [_chat(gateway.url, gateway.key, "trace-7") for _ in range(3)]
    _drain()
    browser = cast.client_for(cast.alice)
    page = browser.get("/usage/requests/", {"request_id": "trace-7"}).content.decode()
    for response in sent:
        assert f"/usage/requests/{response.headers['X-Generation-Id']}/" in page
    detail = browser.get(f"/usage/requests/{sent[0].headers['X-Generation-Id']}/")
    assert detail.status_code == 200 and "trace-7" in detail.content.decode()
