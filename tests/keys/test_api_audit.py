"""``GET /api/v1/audit``: the team's audit log over the management API.

Management keys and owners/admins (session) read their own team's events;
members and OAuth tokens are refused, another team sees nothing, and bad
query parameters get the API's error object.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client

from accounts.audit.services import audit_record
from accounts.models import AuditEvent, Team
from accounts.services import team_limits_update
from tests.accounts.cast import Cast, build_cast, management_key
from tests.conftest import openai_catalog

pytestmark = pytest.mark.django_db

URL = "/api/v1/audit"


@pytest.fixture
def cast(team: Team, other_team: Team, load_catalog: Callable[[str], None]) -> Cast:
    load_catalog(openai_catalog("http://127.0.0.1:9"))
    return build_cast(team=team, other_team=other_team)


def bearer(team: Team) -> Client:
    return Client(headers={"authorization": f"Bearer {management_key(team).plaintext}"})


def test_management_key_lists_its_team_newest_first(cast: Cast) -> None:
    team_limits_update(team=cast.team, by=cast.alice, rpm_limit=10)
    team_limits_update(team=cast.other_team, by=cast.mallory, rpm_limit=99)
    response = bearer(cast.team).get(URL)
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    # Two key creations by build_cast (alice's key), the limit change, the
    # management key's own creation.
    actions = [e["action"] for e in body["data"]]
    assert actions[0] == "key.created"  # the management key, created last
    assert "team.limits_changed" in actions
    assert body["total"] == len(actions)
    assert (body["offset"], body["page_size"]) == (0, 50)
    change = next(e for e in body["data"] if e["action"] == "team.limits_changed")
    assert change["actor"] == {"kind": "user", "label": "alice"}
    assert change["target"] == {"type": "team", "id": "acme", "label": "Acme"}
    assert change["changes"] == {"rpm_limit": {"before": None, "after": 10}}
    assert "client_ip" in change and "created_at" in change
    assert all(e["target"]["label"] != "Globex" for e in body["data"])


def test_filters_and_pages(cast: Cast) -> None:
    for i in range(5):
        audit_record(
            team=cast.team,
            action=AuditEvent.Action.TEAM_BUDGET_CHANGED,
            target_type="team",
            changes={"budget_rub": {"before": None, "after": f"{i}.00"}},
            actor=cast.carol,
        )
    client = bearer(cast.team)
    page = client.get(URL, {"action": "team.budget_changed", "page_size": 2, "offset": 2}).json()
    assert page["total"] == 5
    assert [e["changes"]["budget_rub"]["after"] for e in page["data"]] == ["2.00", "1.00"]
    by_actor = client.get(URL, {"actor": "caro"}).json()
    assert by_actor["total"] == 5


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"action": "key.stolen"}, "action"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": 101}, "page_size"),
        ({"offset": -1}, "offset"),
        ({"bogus": "1"}, "bogus"),
    ],
)
def test_bad_query_is_a_400_naming_the_parameter(
    cast: Cast, params: dict[str, object], param: str
) -> None:
    response = bearer(cast.team).get(URL, params)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["param"] == param


def test_owner_and_admin_sessions_read_members_are_refused(cast: Cast) -> None:
    assert cast.client_for(cast.alice, cast.team).get(URL).status_code == 200
    assert cast.client_for(cast.carol, cast.team).get(URL).status_code == 200
    response = cast.client_for(cast.bob, cast.team).get(URL)
    assert response.status_code == 403
    assert "audit log" in response.json()["error"]["message"]


def test_no_credentials_is_401(cast: Cast) -> None:
    assert Client().get(URL).status_code == 401


def test_the_schema_documents_the_endpoint(cast: Cast) -> None:
    schema = Client().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"]["/api/v1/audit"]["get"]
    assert operation["operationId"] == "audit_list"
    names = {p["name"] for p in operation["parameters"]}
    assert {"action", "actor", "offset", "page_size"} <= names
