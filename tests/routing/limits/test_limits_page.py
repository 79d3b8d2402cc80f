"""The Limits page and a key's limits in the dashboard, end to end.

Owners and admins set team caps, default key limits and the budget; members
read the page and a member's direct POST is refused with nothing changed.
Bad values come back in the form in the page's language. A change applies
to the gateway's next request, and the state shown next to each limit is
the limiter's own, on Redis and on the database alike.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import requests
from django.conf import settings
from django.test import Client, override_settings

from accounts.models import Team
from accounts.services import team_limits_update
from keys.services import CreatedKey, api_key_update
from routing.limits.limiter import limiter
from routing.limits.state import key_limit_state, team_limit_state
from routing.models import LimiterEntry
from tests.accounts.cast import Cast, build_cast
from tests.conftest import LiveGateway, openai_catalog

URL = "/limits/"
FORM = {
    "rpm_limit": "",
    "tpm_limit": "",
    "concurrency_limit": "",
    "default_key_rpm": "",
    "default_key_tpm": "",
    "default_key_concurrency": "",
    "budget_rub": "",
    "budget_period": "monthly",
}


@pytest.fixture
def cast(team: Team, other_team: Team, load_catalog: Callable[[str], None]) -> Cast:
    load_catalog(openai_catalog("http://127.0.0.1:9"))
    return build_cast(team=team, other_team=other_team)


def chat(gateway: LiveGateway, key: str | None = None) -> requests.Response:
    return requests.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "local/mock", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {key or gateway.key}"},
        timeout=10,
    )


@pytest.mark.django_db
def test_owner_sets_caps_defaults_and_budget(cast: Cast) -> None:
    client = cast.client_for(cast.alice, cast.team)
    response = client.post(
        URL,
        {
            **FORM,
            "rpm_limit": "600",
            "concurrency_limit": "8",
            "default_key_tpm": "20000",
            "budget_rub": "1500.50",
            "budget_period": "weekly",
        },
    )
    assert response.status_code == 302 and response["Location"] == URL
    cast.team.refresh_from_db()
    assert (cast.team.rpm_limit, cast.team.concurrency_limit) == (600, 8)
    assert cast.team.default_key_tpm == 20000
    assert (cast.team.budget_rub, cast.team.budget_period) == (Decimal("1500.50"), "weekly")
    page = client.get(URL).content.decode()
    assert 'value="600"' in page and 'value="1500.50"' in page
    assert "Used 0 of 600" in page
    assert "Used 0.00 of 1,500.50 RUB" in page
    # An admin may too; emptying a field removes the limit.
    carol = cast.client_for(cast.carol, cast.team)
    assert carol.post(URL, {**FORM, "budget_period": "weekly"}).status_code == 302
    cast.team.refresh_from_db()
    assert cast.team.rpm_limit is None and cast.team.budget_rub is None


@pytest.mark.django_db
def test_member_reads_but_a_direct_post_is_refused(cast: Cast) -> None:
    team_limits_update(team=cast.team, by=cast.alice, rpm_limit=50)
    bob = cast.client_for(cast.bob, cast.team)
    page = bob.get(URL)
    assert page.status_code == 200
    body = page.content.decode()
    assert "Only owners and admins can change limits and budgets." in body
    assert all(field.disabled for field in page.context["form"].fields.values())
    response = bob.post(URL, {**FORM, "rpm_limit": "100000", "budget_rub": "0"})
    assert response.status_code == 403
    cast.team.refresh_from_db()
    assert (cast.team.rpm_limit, cast.team.budget_rub) == (50, None)
    # Outsiders see their own team only: mallory's page is Globex's.
    mallory = cast.client_for(cast.mallory, cast.other_team)
    assert "Globex" in mallory.get(URL).content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("rpm_limit", "0", "Ensure this value is greater than or equal to 1."),
        ("rpm_limit", "-5", "Ensure this value is greater than or equal to 1."),
        ("rpm_limit", "1000001", "Ensure this value is less than or equal to 1000000."),
        ("tpm_limit", "ten", "Enter a whole number."),
        ("concurrency_limit", "1.5", "Enter a whole number."),
        ("budget_rub", "10.005", "Ensure that there are no more than 2 decimal places."),
        ("budget_rub", "-1", "Ensure this value is greater than or equal to 0."),
        ("budget_rub", "1000000000.01", "Ensure this value is less than or equal to 1000000000"),
        ("budget_rub", "NaN", "Enter a number."),
        ("budget_period", "hourly", "Select a valid choice."),
    ],
)
def test_bad_values_are_shown_in_the_form_and_change_nothing(
    cast: Cast, field: str, value: str, message: str
) -> None:
    client = cast.client_for(cast.alice, cast.team)
    response = client.post(URL, {**FORM, "rpm_limit": "7", field: value})
    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert message in " ".join(response.context["form"].errors[field])
    assert 'aria-invalid="true"' in response.content.decode()
    cast.team.refresh_from_db()
    assert cast.team.rpm_limit is None


@pytest.mark.django_db
def test_errors_are_in_russian(cast: Cast) -> None:
    client = cast.client_for(cast.alice, cast.team)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "ru"
    response = client.post(URL, {**FORM, "rpm_limit": "0", "budget_rub": "1,005"})
    body = response.content.decode()
    assert "Лимиты и бюджет" in body
    assert "Убедитесь, что это значение больше либо равно 1." in body
    assert "Убедитесь, что вы ввели не более 2 цифр после запятой." in body
    # A Russian decimal comma is understood.
    ok = client.post(URL, {**FORM, "budget_rub": "1 500,25"})
    assert ok.status_code == 302
    cast.team.refresh_from_db()
    assert cast.team.budget_rub == Decimal("1500.25")


@pytest.mark.django_db
def test_service_refuses_what_the_form_would(cast: Cast) -> None:
    from django.core.exceptions import ValidationError

    from accounts.roles import RoleDenied

    with pytest.raises(RoleDenied, match="Only team owners and admins can change limits"):
        team_limits_update(team=cast.team, by=cast.bob, rpm_limit=1)
    with pytest.raises(ValidationError) as excinfo:
        team_limits_update(
            team=cast.team, by=None, tpm_limit=0, budget_rub=Decimal("1.001"), name="x"
        )
    assert set(excinfo.value.message_dict) == {"tpm_limit", "budget_rub", "name"}


def test_a_team_budget_and_a_key_limit_apply_to_the_next_request(
    gateway: LiveGateway, team: Team
) -> None:
    """Set in the dashboard, enforced by /v1/ at once, then lifted again."""
    cast = build_cast(team=team, other_team=Team.objects.create(slug="globex", name="Globex"))
    owner = cast.client_for(cast.alice, team)
    assert chat(gateway).status_code == 200
    assert owner.post(URL, {**FORM, "budget_rub": "0"}).status_code == 302
    refused = chat(gateway)
    assert refused.status_code == 402
    assert refused.json()["error"]["code"] == "insufficient_budget"
    assert owner.post(URL, FORM).status_code == 302
    assert chat(gateway).status_code == 200

    key = cast.alice_key
    response = owner.post(
        f"/keys/{key.api_key.public_id}/", {"name": "acme prod", "rpm_limit": "1"}
    )
    assert response.status_code == 302
    assert chat(gateway, key.plaintext).status_code == 200
    second = chat(gateway, key.plaintext)
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "rate_limit_requests"
    # The key page shows what the limiter counted.
    page = owner.get(f"/keys/{key.api_key.public_id}/").content.decode()
    assert "Used 1 of 1 · 0 left" in page


def _use(gateway: LiveGateway, n: int) -> None:
    for _ in range(n):
        assert chat(gateway).status_code == 200


@pytest.mark.parametrize("engine", ["redis", "database"])
def test_state_is_the_limiters_own(
    engine: str, gateway: LiveGateway, team: Team, settings: Any
) -> None:
    """Used and remaining match what the gateway counted, on Redis or the database."""
    if engine == "database":
        settings.XROUTER_LIMITER_REDIS_URL = ""
        limiter.reset()
    team_limits_update(
        team=team, by=None, rpm_limit=10, tpm_limit=100_000, budget_rub=Decimal("50")
    )
    _use(gateway, 3)
    rows = {row.kind: row for row in team_limit_state(team)}
    assert rows["r"].used == 3 and rows["r"].remaining == 7
    assert rows["r"].resets_at is not None
    assert rows["r"].engine == engine
    assert 0 < rows["t"].used < 100_000
    assert Decimal(0) < rows["b"].used < Decimal(50)
    assert rows["b"].resets_at is not None  # monthly
    if engine == "database":
        assert LimiterEntry.objects.filter(limit_key__contains=":team:rpm").count() == 3
    # Peeking reserves nothing.
    team_limit_state(team)
    assert {row.kind: row.used for row in team_limit_state(team)}["r"] == 3


def test_key_and_model_state(gateway: LiveGateway, team: Team, make_key: Any) -> None:
    created: CreatedKey = make_key()
    api_key_update(
        api_key=created.api_key,
        concurrency_limit=4,
        model_limits={"local/mock": {"rpm": 5, "concurrency": 2}},
    )
    team_limits_update(team=team, by=None, default_key_rpm=9)
    for _ in range(2):
        assert chat(gateway, created.plaintext).status_code == 200
    created.api_key.refresh_from_db()
    rows = key_limit_state(created.api_key)
    own = {(r.scope, r.kind): r for r in rows}
    assert own[("key", "r")].limit == 9 and own[("key", "r")].inherited is True
    assert own[("key", "r")].used == 2
    assert own[("key", "c")].used == 0 and own[("key", "c")].limit == 4
    model = [r for r in rows if r.scope == "key-model"]
    assert [(r.model_id, r.kind, r.used) for r in model] == [
        ("local/mock", "r", 2),
        ("local/mock", "c", 0),
    ]


@pytest.mark.django_db
def test_per_model_rows_validate(cast: Cast) -> None:
    client = cast.client_for(cast.alice, cast.team)
    key = cast.alice_key.api_key
    url = f"/keys/{key.public_id}/"

    def post(**rows: str) -> Any:
        return client.post(
            url,
            {"name": "acme prod", "model-TOTAL_FORMS": "2", "model-INITIAL_FORMS": "0", **rows},
        )

    twice = post(
        **{
            "model-0-model": "local/mock",
            "model-0-rpm": "1",
            "model-1-model": "local/mock",
            "model-1-tpm": "2",
        }
    )
    assert "local/mock is listed twice" in twice.content.decode()
    empty = post(**{"model-0-model": "local/mock"})
    assert "Set at least one limit for this model" in empty.content.decode()
    orphan = post(**{"model-0-rpm": "3"})
    assert "Choose the model these limits are for." in orphan.content.decode()
    unknown = post(**{"model-0-model": "evil/model", "model-0-rpm": "3"})
    assert "Select a valid choice." in unknown.content.decode()
    key.refresh_from_db()
    assert key.model_limits == {}
    ok = post(**{"model-0-model": "local/mock", "model-0-rpm": "3", "model-0-concurrency": "1"})
    assert ok.status_code == 302
    key.refresh_from_db()
    assert key.model_limits == {"local/mock": {"rpm": 3, "concurrency": 1}}
    # Choosing "—" removes the row.
    assert post(**{"model-0-model": ""}).status_code == 302
    key.refresh_from_db()
    assert key.model_limits == {}


@pytest.mark.django_db
def test_member_post_to_a_key_is_refused(cast: Cast) -> None:
    key = cast.alice_key.api_key
    bob = cast.client_for(cast.bob, cast.team)
    page = bob.get(f"/keys/{key.public_id}/")
    assert page.status_code == 200
    assert all(f.disabled for f in page.context["model_forms"].forms[0].fields.values())
    response = bob.post(f"/keys/{key.public_id}/", {"name": "x", "rpm_limit": "1"})
    assert response.status_code == 403
    key.refresh_from_db()
    assert (key.name, key.rpm_limit) == ("acme prod", None)


@override_settings(XROUTER_LIMITER_REDIS_URL="redis://127.0.0.1:1/0", XROUTER_LIMITER_TIMEOUT=0.2)
@pytest.mark.django_db
def test_state_falls_back_to_this_process_when_redis_is_down(cast: Cast) -> None:
    limiter.reset()
    team_limits_update(team=cast.team, by=None, rpm_limit=3)
    rows = team_limit_state(cast.team)
    assert [(r.kind, r.used, r.engine) for r in rows] == [("r", 0, "local")]
    limiter.reset()


def test_page_requires_login() -> None:
    response = Client().get(URL)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
