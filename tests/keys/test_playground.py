"""The playground page and its keys: who may mint one, what it can do.

A playground key is a standard key of the session's current team, minted by
a CSRF-checked POST for a user whose role may create keys; it expires, is
labelled in the key list, goes through the team's limits and leaves usage
records like any key. Hostile paths: members, other teams, missing CSRF
tokens, the management API, expired and revoked keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from accounts.models import Membership, Team
from accounts.services import team_add_member, team_member_set_role
from keys.models import ApiKey
from keys.playground import services
from keys.services import api_key_rotate, api_key_update
from routing.models import UsageRecord
from routing.usage import records as usage
from tests.accounts.cast import Cast, build_cast, management_key
from tests.conftest import openai_catalog

MINT = "/playground/key/"


@pytest.fixture
def cast(
    team: Team,
    other_team: Team,
    load_catalog: Callable[[str], None],
    upstream_control: Any,
    upstream: Any,
) -> Cast:
    load_catalog(openai_catalog(upstream.base_url))
    return build_cast(team=team, other_team=other_team)


def mint(client: Client) -> dict[str, Any]:
    response = client.post(MINT)
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    return response.json()


def bearer(key: str) -> Client:
    return Client(headers={"authorization": f"Bearer {key}"})


def chat(key: str, **extra: Any) -> Any:
    body = {"model": "local/mock", "messages": [{"role": "user", "content": "hi"}], **extra}
    return bearer(key).post("/v1/chat/completions", body, content_type="application/json")


def drain() -> None:
    sink = usage.stream_sink()
    if sink is not None:
        while sink.consume_once(block_ms=10):
            pass
    usage.flush_all()


def test_page_needs_login(cast: Cast) -> None:
    assert Client().get("/playground/").status_code == 302
    assert Client().post(MINT).status_code == 302
    assert ApiKey.objects.filter(playground=True).count() == 0


def test_owner_sees_models_with_prices_and_no_key_is_minted_by_looking(cast: Cast) -> None:
    """The page lists chat models with RUB per 1M prices; a GET mints nothing."""
    response = cast.client_for(cast.alice).get("/playground/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<option value="local/mock" data-context=""' in html
    assert "local/mock · 500.00 / 1,500.00" in html
    # Embedding models cannot chat.
    assert 'value="local/embed"' not in html
    assert 'id="playground-strings" type="application/json"' in html
    assert "/static/xrouter/playground.js" in html
    assert ApiKey.objects.filter(playground=True).count() == 0
    assert 'aria-current="page">Playground</a>' in html


def test_mint_gives_a_labelled_expiring_standard_key(cast: Cast) -> None:
    before = timezone.now()
    body = mint(cast.client_for(cast.alice))
    key = ApiKey.objects.get(public_id=body["id"])
    assert body["key"].startswith("xr_live_") and body["masked"] == key.masked
    assert (key.team, key.created_by, key.kind, key.playground) == (
        cast.team,
        cast.alice,
        ApiKey.Kind.STANDARD,
        True,
    )
    assert key.name == "Playground · alice" and body["team"] == "Acme"
    assert key.expires_at is not None
    assert before + timedelta(minutes=59) < key.expires_at <= timezone.now() + timedelta(minutes=60)
    # Only the hash is stored.
    assert body["key"] not in str(ApiKey.objects.filter(pk=key.pk).values().get())


@override_settings(XROUTER_PLAYGROUND_KEY_TTL_MINUTES=5)
def test_ttl_setting(cast: Cast) -> None:
    key = ApiKey.objects.get(public_id=mint(cast.client_for(cast.alice))["id"])
    assert key.expires_at is not None
    assert key.expires_at <= timezone.now() + timedelta(minutes=5)


def test_key_calls_the_gateway_and_shows_in_usage(cast: Cast) -> None:
    """The key streams from /v1/ and the request is recorded against it."""
    body = mint(cast.client_for(cast.alice))
    response = chat(body["key"], stream=True, stream_options={"include_usage": True})
    assert response.status_code == 200
    assert response["x-xrouter-provider"] == "local"
    stream = b"".join(response.streaming_content).decode()
    assert stream.endswith("data: [DONE]\n\n") and '"usage"' in stream
    generation = response["X-Generation-Id"]
    drain()
    record = UsageRecord.objects.get(generation_id=generation)
    assert record.key is not None and str(record.key.public_id) == body["id"]
    assert record.team == cast.team and record.cost_rub > 0
    # The playground reads the billed cost back with the same key.
    data = bearer(body["key"]).get("/api/v1/generation", {"id": generation}).json()["data"]
    assert data["total_cost"] == float(record.cost_rub) and data["provider_name"] == "local"


def test_team_caps_apply_to_playground_keys(cast: Cast) -> None:
    """A team cap of one request a minute refuses the playground's second."""
    cast.team.rpm_limit = 1
    cast.team.save()
    key = mint(cast.client_for(cast.alice))["key"]
    assert chat(key).status_code == 200
    refused = chat(key)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_requests"


def test_gateway_errors_come_back_in_openai_shape(cast: Cast) -> None:
    """What the page validates, the gateway validates too."""
    key = mint(cast.client_for(cast.alice))["key"]
    bad = chat(key, temperature="hot")
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "temperature"
    bad = chat(key, tools=[{"type": "function", "function": {}}])
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "tools[0].function.name"
    bad = chat(key, response_format={"type": "json_schema", "json_schema": {"schema": {}}})
    assert bad.json()["error"]["param"] == "response_format.json_schema.name"


def test_member_is_refused_and_nothing_is_created(cast: Cast) -> None:
    """A member may not create keys, so not a playground key either."""
    bob = cast.client_for(cast.bob)
    page = bob.get("/playground/").content.decode()
    assert 'data-testid="playground-denied"' in page and 'id="playground"' not in page
    response = bob.post(MINT)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["type"] == "permission_error" and "owners and admins" in error["message"]
    assert ApiKey.objects.filter(playground=True).count() == 0


def test_owner_elsewhere_is_refused_in_a_team_where_they_are_a_member(cast: Cast) -> None:
    """The session's current team decides, with the role held there."""
    team_add_member(team=cast.other_team, user=cast.alice, role=Membership.Role.MEMBER)
    client = cast.client_for(cast.alice, team=cast.other_team)
    assert client.post(MINT).status_code == 403
    assert ApiKey.objects.filter(playground=True).count() == 0


def test_a_team_field_in_the_request_is_ignored(cast: Cast) -> None:
    """Nothing in the POST can pick another team: mallory's key is Globex's."""
    body = cast.client_for(cast.mallory).post(MINT, {"team": cast.team.pk, "team_id": "1"})
    key = ApiKey.objects.get(public_id=body.json()["id"])
    assert key.team == cast.other_team


def test_mint_needs_the_csrf_token(cast: Cast) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(cast.alice)
    assert client.post(MINT).status_code == 403
    assert client.post("/playground/key/revoke/").status_code == 403
    assert ApiKey.objects.filter(playground=True).count() == 0
    page = client.get("/playground/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None
    response = client.post(MINT, headers={"x-csrftoken": token.group(1)})
    assert response.status_code == 200


def test_get_is_not_allowed(cast: Cast) -> None:
    assert cast.client_for(cast.alice).get(MINT).status_code == 405


def test_other_teams_key_reads_none_of_our_generations(cast: Cast) -> None:
    ours = mint(cast.client_for(cast.alice))["key"]
    theirs = mint(cast.client_for(cast.mallory))["key"]
    generation = chat(ours)["X-Generation-Id"]
    drain()
    assert bearer(theirs).get("/api/v1/generation", {"id": generation}).status_code == 404
    assert bearer(ours).get("/api/v1/generation", {"id": generation}).status_code == 200


def test_playground_key_is_not_a_management_key(cast: Cast) -> None:
    key = mint(cast.client_for(cast.alice))["key"]
    assert bearer(key).get("/api/v1/keys").status_code == 401


def test_expired_and_revoked_keys_are_refused(cast: Cast) -> None:
    client = cast.client_for(cast.alice)
    first = mint(client)
    ApiKey.objects.filter(public_id=first["id"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    # The principal cache (1 s local, shared tier) holds no entry yet.
    assert chat(first["key"]).status_code == 401
    second = mint(client)
    assert chat(second["key"]).status_code == 200
    response = client.post("/playground/key/revoke/")
    assert response.json() == {"revoked": 1}
    assert chat(second["key"]).status_code == 401


def test_a_user_holds_at_most_three_live_keys(cast: Cast) -> None:
    """Each mint revokes the expired ones and all but the newest two live ones."""
    client = cast.client_for(cast.alice)
    minted = [mint(client)["id"] for _ in range(4)]
    live = set(
        ApiKey.objects.filter(playground=True, revoked_at__isnull=True).values_list(
            "public_id", flat=True
        )
    )
    assert {str(p) for p in live} == set(minted[1:])
    ApiKey.objects.filter(public_id__in=minted[1:]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    newest = mint(client)["id"]
    live = ApiKey.objects.filter(playground=True, revoked_at__isnull=True)
    assert [str(k.public_id) for k in live] == [newest]


def test_revoke_takes_only_my_playground_keys(cast: Cast) -> None:
    mint(cast.client_for(cast.carol))
    mint(cast.client_for(cast.alice))
    response = cast.client_for(cast.alice).post("/playground/key/revoke/")
    assert response.json() == {"revoked": 1}
    assert ApiKey.objects.get(created_by=cast.carol, playground=True).revoked_at is None
    assert ApiKey.objects.get(pk=cast.alice_key.api_key.pk).revoked_at is None


def test_demotion_revokes_the_playground_key(cast: Cast) -> None:
    """An admin made member loses the keys they created, playground ones too."""
    key = mint(cast.client_for(cast.carol))
    owner = Membership.objects.get(team=cast.team, user=cast.alice)
    carol = Membership.objects.get(team=cast.team, user=cast.carol)
    team_member_set_role(membership=carol, role=Membership.Role.MEMBER, by=owner)
    assert ApiKey.objects.get(public_id=key["id"]).revoked_at is not None
    assert chat(key["key"]).status_code == 401


def test_key_list_labels_playground_keys_and_they_cannot_be_rotated(cast: Cast) -> None:
    client = cast.client_for(cast.alice)
    body = mint(client)
    html = client.get("/keys/").content.decode()
    row = re.search(rf'<tr data-key="{body["id"]}">(.*?)</tr>', html, re.S)
    assert row is not None
    assert '<span class="badge">playground</span>' in row.group(1)
    assert "/rotate/" not in row.group(1)
    key = ApiKey.objects.get(public_id=body["id"])
    with pytest.raises(Exception, match="cannot be rotated"):
        api_key_rotate(api_key=key, created_by=cast.alice)
    assert client.post(f"/keys/{key.public_id}/rotate/").status_code == 302
    assert ApiKey.objects.filter(playground=False, name=key.name).count() == 0
    # Its expiry can come sooner, never later or never.
    with pytest.raises(Exception, match="brought forward"):
        api_key_update(api_key=key, expires_at=None)
    with pytest.raises(Exception, match="brought forward"):
        api_key_update(api_key=key, expires_at=timezone.now() + timedelta(days=30))
    sooner = timezone.now() + timedelta(minutes=1)
    assert api_key_update(api_key=key, expires_at=sooner).expires_at == sooner
    # The detail page shows it read-only.
    detail = client.get(f"/keys/{key.public_id}/")
    assert detail.context["editable"] is False


def test_service_refuses_members_directly(cast: Cast) -> None:
    from accounts.roles import RoleDenied

    with pytest.raises(RoleDenied):
        services.playground_key_mint(team=cast.team, user=cast.bob)
    with pytest.raises(RoleDenied):
        services.playground_key_mint(team=cast.team, user=cast.mallory)


def test_page_in_russian(cast: Cast) -> None:
    client = cast.client_for(cast.alice)
    client.cookies["django_language"] = "ru"
    html = client.get("/playground/").content.decode()
    assert "Песочница" in html and "Системный промпт" in html
    strings = re.search(
        r'<script id="playground-strings" type="application/json">(.*?)</script>', html, re.S
    )
    assert strings is not None
    assert json.loads(strings.group(1))["provider"] == "Провайдер"


def test_management_api_labels_playground_keys(cast: Cast) -> None:
    body = mint(cast.client_for(cast.alice))
    listed = bearer(management_key(cast.team).plaintext).get("/api/v1/keys").json()["data"]
    flags = {item["id"]: item["playground"] for item in listed}
    assert flags[body["id"]] is True
    assert flags[str(cast.alice_key.api_key.public_id)] is False
