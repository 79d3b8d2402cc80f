"""``GET /api/v1/generation?id=``: the owner gets its record, others 404."""

from __future__ import annotations

from collections.abc import Callable

from django.test import Client

from keys.services import api_key_create
from routing.usage.records import UsageEvent
from tests.accounts.cast import Cast, management_key


def bearer(key: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def test_owner_key_gets_its_generation(cast: Cast, record_usage: Callable[..., UsageEvent]) -> None:
    """The key that made the request reads it, in OpenRouter's shape."""
    event = record_usage(
        team_id=cast.team.pk,
        key_id=cast.alice_key.api_key.pk,
        stream=True,
        stream_complete=False,
        ttft_ms=42.0,
        latency_ms=300.4,
        cached_tokens=4,
        attempts=[
            {
                "model": "local/mock",
                "provider": "a",
                "deployment_id": 1,
                "status": 503,
                "error_code": "upstream_unavailable",
                "latency_ms": 12.5,
            },
            {
                "model": "local/mock",
                "provider": "local",
                "deployment_id": 2,
                "status": 200,
                "error_code": None,
                "latency_ms": 280.0,
            },
        ],
    )
    response = Client().get(
        "/api/v1/generation", {"id": event.request_id}, **bearer(cast.alice_key.plaintext)
    )
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    data = response.json()["data"]
    assert data["id"] == event.request_id
    assert data["model"] == "local/mock" and data["provider_name"] == "local"
    assert data["total_cost"] == 0.035 and data["currency"] == "RUB"
    assert (data["tokens_prompt"], data["tokens_completion"], data["native_tokens_cached"]) == (
        10,
        20,
        4,
    )
    assert data["streamed"] is True and data["cancelled"] is True
    assert (data["latency"], data["generation_time"]) == (42, 300)
    assert data["api_key"] == str(cast.alice_key.api_key.public_id)
    assert data["attempts"][0] == {
        "model": "local/mock",
        "provider": "a",
        "status": 503,
        "error_code": "upstream_unavailable",
        "latency_ms": 12.5,
    }


def test_team_management_key_and_session_see_the_team(
    cast: Cast, record_usage: Callable[..., UsageEvent]
) -> None:
    """A management key or a member's session reads any request of the team."""
    event = record_usage(team_id=cast.team.pk, key_id=cast.alice_key.api_key.pk)
    manager = management_key(cast.team)
    client = Client()
    ok = client.get("/api/v1/generation", {"id": event.request_id}, **bearer(manager.plaintext))
    assert ok.status_code == 200
    session = cast.client_for(cast.bob).get("/api/v1/generation", {"id": event.request_id})
    assert session.status_code == 200 and session.json()["data"]["id"] == event.request_id


def test_other_team_and_sibling_key_get_404(
    cast: Cast, record_usage: Callable[..., UsageEvent]
) -> None:
    """Another team's key, manager or member, and a sibling key: the same 404."""
    event = record_usage(team_id=cast.team.pk, key_id=cast.alice_key.api_key.pk)
    sibling = api_key_create(team=cast.team, name="sibling")
    for headers in (
        bearer(cast.mallory_key.plaintext),
        bearer(management_key(cast.other_team).plaintext),
        bearer(sibling.plaintext),
    ):
        response = Client().get("/api/v1/generation", {"id": event.request_id}, **headers)
        assert response.status_code == 404
        assert response.json() == {
            "error": {
                "message": "No generation with this id.",
                "type": "invalid_request_error",
                "param": None,
                "code": "not_found",
            }
        }
    session = cast.client_for(cast.mallory).get("/api/v1/generation", {"id": event.request_id})
    assert session.status_code == 404


def test_bad_ids_and_missing_auth(cast: Cast) -> None:
    """No id or a malformed one is 400, unknown is 404, no key is 401."""
    client = Client()
    headers = bearer(cast.alice_key.plaintext)
    missing = client.get("/api/v1/generation", **headers)
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "missing_required_parameter"
    assert missing.json()["error"]["param"] == "id"
    for bad in ("has space", "x" * 129, "a/b"):
        response = client.get("/api/v1/generation", {"id": bad}, **headers)
        assert response.status_code == 400, bad
        assert response.json()["error"]["param"] == "id"
    assert client.get("/api/v1/generation", {"id": "nope"}, **headers).status_code == 404
    anonymous = client.get("/api/v1/generation", {"id": "nope"})
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"] == 'Bearer realm="xrouter"'
    wrong = client.get("/api/v1/generation", {"id": "nope"}, **bearer("xr_live_" + "a" * 48))
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"


def test_standard_keys_still_refused_by_the_rest_of_the_api(cast: Cast) -> None:
    """The wider auth is for this endpoint only."""
    response = Client().get("/api/v1/keys", **bearer(cast.alice_key.plaintext))
    assert response.status_code == 401
