"""Team data policy and PII mode: ``PATCH /api/v1/teams/current``, the
dashboard page and the per-key PII override; only owners loosen."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from accounts.models import Team
from keys.auth import resolve_key
from keys.models import ApiKey
from tests.accounts.cast import Cast, build_cast, management_key
from tests.conftest import openai_catalog

URL = "/api/v1/teams/current"


@pytest.fixture
def cast(team: Team, other_team: Team, load_catalog: Callable[[str], None]) -> Cast:
    load_catalog(openai_catalog("http://127.0.0.1:9"))
    return build_cast(team=team, other_team=other_team)


def patch(client: Client, body: Any, url: str = URL) -> Any:
    return client.patch(url, data=json.dumps(body), content_type="application/json")


def _team() -> Team:
    return Team.objects.get(slug="acme")


def test_owner_sets_and_loosens_both_settings(cast: Cast) -> None:
    client = cast.client_for(cast.alice)
    response = patch(client, {"data_policy": "ru_no_retention", "pii_mode": "block"})
    assert response.status_code == 200, response.content
    data = response.json()["data"]
    assert (data["data_policy"], data["pii_mode"]) == ("ru_no_retention", "block")
    assert client.get(URL).json()["data"]["data_policy"] == "ru_no_retention"
    response = patch(client, {"data_policy": "any", "pii_mode": "off"})
    assert response.status_code == 200
    team = _team()
    assert (team.data_policy, team.pii_mode) == ("any", "off")


def test_admins_and_management_keys_only_tighten(cast: Cast) -> None:
    admin = cast.client_for(cast.carol)
    assert patch(admin, {"data_policy": "ru_only"}).status_code == 200
    mgmt = Client(headers={"authorization": f"Bearer {management_key(cast.team).plaintext}"})
    assert patch(mgmt, {"pii_mode": "redact"}).status_code == 200
    for client, body in (
        (admin, {"data_policy": "any"}),
        (mgmt, {"pii_mode": "off"}),
        (mgmt, {"data_policy": "ru_no_retention", "pii_mode": "off"}),
    ):
        response = patch(client, body)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "permission_denied"
        assert "owner" in response.json()["error"]["message"]
    team = _team()
    # A refused request changes nothing, not even its tightening half.
    assert (team.data_policy, team.pii_mode) == ("ru_only", "redact")


def test_members_cannot_change_the_team(cast: Cast) -> None:
    response = patch(cast.client_for(cast.bob), {"data_policy": "ru_only"})
    assert response.status_code == 403
    assert _team().data_policy == "any"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"data_policy": "russia"}, "data_policy"),
        ({"pii_mode": True}, "pii_mode"),
        ({"name": "Renamed"}, "name"),
    ],
)
def test_bad_values_are_400_naming_the_field(cast: Cast, body: Any, param: str) -> None:
    response = patch(cast.client_for(cast.alice), body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    team = _team()
    assert (team.name, team.data_policy, team.pii_mode) == ("Acme", "any", "off")


def test_a_change_reaches_the_hot_path_principal(cast: Cast) -> None:
    plaintext = cast.alice_key.plaintext
    assert resolve_key(plaintext).data_policy == "any"
    patch(cast.client_for(cast.alice), {"data_policy": "ru_only", "pii_mode": "redact"})
    principal = resolve_key(plaintext)
    assert (principal.data_policy, principal.pii_mode) == ("ru_only", "redact")


def test_a_key_override_is_stricter_never_looser(cast: Cast) -> None:
    key = cast.alice_key.api_key
    url = f"/api/v1/keys/{key.public_id}"
    owner = cast.client_for(cast.alice)
    response = patch(owner, {"pii_mode": "block"}, url)
    assert response.status_code == 200
    assert response.json()["data"]["pii_mode"] == "block"
    assert resolve_key(cast.alice_key.plaintext).pii_mode == "block"
    patch(owner, {"pii_mode": "block"})  # the team blocks too
    patch(owner, {"pii_mode": "off"}, url)
    assert ApiKey.objects.get(pk=key.pk).pii_mode == "off"
    # The team's block still holds for a key that asks for off.
    assert resolve_key(cast.alice_key.plaintext).pii_mode == "block"
    assert patch(owner, {"pii_mode": "sometimes"}, url).status_code == 400


def test_dashboard_page_owner_saves_member_reads(cast: Cast) -> None:
    owner = cast.client_for(cast.alice)
    page = owner.get("/accounts/data-handling/")
    assert page.status_code == 200
    assert b'name="data_policy"' in page.content and b"ru_no_retention" in page.content
    saved = owner.post("/accounts/data-handling/", {"data_policy": "ru_only", "pii_mode": "redact"})
    assert saved.status_code == 302
    assert (_team().data_policy, _team().pii_mode) == ("ru_only", "redact")
    admin = cast.client_for(cast.carol)
    refused = admin.post("/accounts/data-handling/", {"data_policy": "any", "pii_mode": "redact"})
    assert refused.status_code == 403
    assert _team().data_policy == "ru_only"
    member = cast.client_for(cast.bob)
    assert b"disabled" in member.get("/accounts/data-handling/").content
    assert (
        member.post(
            "/accounts/data-handling/", {"data_policy": "any", "pii_mode": "off"}
        ).status_code
        == 403
    )
    assert _team().data_policy == "ru_only"


def test_deployments_page_shows_region_and_retention(
    cast: Cast, load_catalog: Callable[[str], None]
) -> None:
    load_catalog("""
providers:
  - {name: sber, kind: gigachat, base_url: "https://gigachat.example/api/v1"}
  - {name: abroad, kind: openai, base_url: "http://127.0.0.1:9/v1", data_region: us}
models:
  - {id: a/giga, provider: sber, upstream: GigaChat}
  - {id: a/abroad, provider: abroad, upstream: m}
""")
    page = cast.client_for(cast.bob).get("/routing/deployments/").content.decode()
    assert 'data-region="ru"' in page and 'data-region="us"' in page
    assert 'data-stores-prompts="true"' in page
