"""``GET /api/v1/key`` and ``/api/v1/credits``: the calling key and its team."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests
from django.test import Client
from django.utils import timezone

from accounts.models import Team
from keys.models import ApiKey
from keys.services import CreatedKey, api_key_create
from routing.usage import records as usage
from tests.conftest import LiveGateway


def get(client: Client, path: str, key: str) -> Any:
    return client.get(path, HTTP_AUTHORIZATION=f"Bearer {key}")


@pytest.fixture
def ours(team: Team, make_key: Callable[..., CreatedKey]) -> CreatedKey:
    team.budget_rub = Decimal("500")
    team.budget_period = "monthly"
    team.save()
    return make_key(
        name="ci",
        budget_rub=Decimal("10"),
        budget_period="daily",
        rpm_limit=30,
        tpm_limit=5000,
        expires_at=timezone.now() + timedelta(days=3),
    )


def test_key_shows_label_budget_spend_limits_and_expiry(
    client: Client, ours: CreatedKey, team: Team, record_usage: Callable[..., Any]
) -> None:
    record_usage(team_id=team.pk, key_id=ours.api_key.pk, cost_rub="2.5")
    record_usage(team_id=team.pk, key_id=ours.api_key.pk, cost_rub="1.0")
    # Yesterday's spend counts in the month, not in today's budget.
    record_usage(team_id=team.pk, key_id=ours.api_key.pk, cost_rub="4", created=time.time() - 86400)
    response = get(client, "/api/v1/key", ours.plaintext)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["label"] == ours.api_key.masked and ours.plaintext not in str(data)
    assert data["name"] == "ci"
    assert data["limit"] == 10.0 and data["limit_reset"] == "daily"
    assert data["usage_daily"] == pytest.approx(3.5)
    assert data["limit_remaining"] == pytest.approx(6.5)
    assert data["usage"] == pytest.approx(7.5)
    assert data["currency"] == "RUB"
    assert data["is_provisioning_key"] is False
    assert data["rate_limit"]["requests"] == 30 and data["rate_limit"]["tokens"] == 5000
    assert data["rate_limit"]["requests_used"] == 0
    assert data["expires_at"].startswith(str(ours.api_key.expires_at.date()))


def test_credits_are_the_teams_budget_and_spend(
    client: Client, ours: CreatedKey, team: Team, record_usage: Callable[..., Any]
) -> None:
    another = api_key_create(team=team, name="second")
    record_usage(team_id=team.pk, key_id=ours.api_key.pk, cost_rub="2")
    record_usage(team_id=team.pk, key_id=another.api_key.pk, cost_rub="3")
    data = get(client, "/api/v1/credits", ours.plaintext).json()["data"]
    assert data["total_credits"] == 500.0
    assert data["total_usage"] == pytest.approx(5.0)
    assert data["remaining"] == pytest.approx(495.0)
    assert data["limit_reset"] == "monthly" and data["currency"] == "RUB"


def test_another_teams_key_sees_nothing_of_ours(
    client: Client,
    ours: CreatedKey,
    team: Team,
    other_team: Team,
    record_usage: Callable[..., Any],
) -> None:
    record_usage(team_id=team.pk, key_id=ours.api_key.pk, cost_rub="9")
    theirs = api_key_create(team=other_team, name="theirs")
    key = get(client, "/api/v1/key", theirs.plaintext).json()["data"]
    assert key["label"] == theirs.api_key.masked
    assert key["usage"] == 0 and key["usage_daily"] == 0 and key["limit"] is None
    credits = get(client, "/api/v1/credits", theirs.plaintext).json()["data"]
    assert credits["total_usage"] == 0 and credits["total_credits"] is None


def test_a_management_key_is_a_provisioning_key(client: Client, team: Team) -> None:
    management = api_key_create(team=team, name="ops", kind=ApiKey.Kind.MANAGEMENT)
    data = get(client, "/api/v1/key", management.plaintext).json()["data"]
    assert data["is_provisioning_key"] is True


@pytest.mark.parametrize("path", ["/api/v1/key", "/api/v1/credits"])
def test_without_a_valid_key_is_401(client: Client, path: str) -> None:
    assert client.get(path).status_code in (401, 403)
    response = get(client, path, "xr_live_nope")
    assert response.status_code == 401
    assert response.json()["error"]["message"]


def test_rate_limit_state_counts_this_minutes_requests(
    gateway: LiveGateway, make_key: Callable[..., CreatedKey]
) -> None:
    limited = make_key(rpm_limit=5)
    for _ in range(2):
        requests.post(
            f"{gateway.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {limited.plaintext}"},
            json={"model": "local/mock", "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        ).raise_for_status()
    usage.flush_all()
    response = requests.get(
        f"{gateway.url}/api/v1/key",
        headers={"Authorization": f"Bearer {limited.plaintext}"},
        timeout=10,
    )
    rate = response.json()["data"]["rate_limit"]
    assert rate == {
        "requests": 5,
        "interval": "1m",
        "requests_used": 2,
        "requests_remaining": 3,
        "tokens": None,
        "concurrency": None,
    }
