"""A key's page shows its own usage: charts, totals and its last requests.

Usage of the team's other keys and of other teams never appears; each of
the last requests links to the request's detail page.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import Team
from keys.models import ApiKey
from routing.models import UsageRecord
from routing.usage import rollups
from tests.accounts.cast import Cast, build_cast
from tests.conftest import openai_catalog

pytestmark = pytest.mark.django_db


@pytest.fixture
def cast(team: Team, other_team: Team, load_catalog: Callable[[str], None]) -> Cast:
    load_catalog(openai_catalog("http://127.0.0.1:9"))
    return build_cast(team=team, other_team=other_team)


def record(key: ApiKey, n: int, *, status: int = 200, days_ago: int = 0) -> UsageRecord:
    return UsageRecord.objects.create(
        request_id=f"req-{key.pk}-{n}",
        generation_id=f"gen-1700000000-{key.pk:04d}{n:016d}",
        created_at=timezone.now() - timedelta(days=days_ago, minutes=n),
        team=key.team,
        key=key,
        endpoint="chat",
        requested_model="local/mock",
        served_model="local/mock" if status == 200 else "",
        provider="local" if status == 200 else "",
        prompt_tokens=100,
        completion_tokens=50,
        cost_rub=Decimal("0.125"),
        status=status,
        error_code="" if status == 200 else "upstream_error",
        latency_ms=300,
    )


def test_key_page_shows_its_usage_and_links_its_requests(cast: Cast) -> None:
    key = cast.alice_key.api_key
    other = ApiKey.objects.create(
        team=cast.team, name="other", key_hash="0" * 64, prefix="xr_live_zz", last4="zzzz"
    )
    mine = [record(key, i, days_ago=i % 3) for i in range(4)]
    mine.append(record(key, 9, status=502))
    record(other, 1)
    record(cast.mallory_key.api_key, 1)
    today = timezone.now().date()
    rollups.usage_rollup_range(start=today - timedelta(days=5), end=today)

    page = cast.client_for(cast.bob, cast.team).get(f"/keys/{key.public_id}/")
    assert page.status_code == 200
    usage = page.context["key_usage"]
    assert usage["summary"].overall.requests == 5
    assert usage["summary"].overall.errors == 1
    assert usage["summary"].overall.tokens == 5 * 150
    assert usage["summary"].overall.cost_rub == Decimal("0.625")
    assert [c.title for c in usage["charts"]] == [
        "Requests",
        "Tokens",
        "Cost, RUB",
        "Errors",
        "Latency percentiles",
    ]
    body = page.content.decode()
    assert body.count('<figure class="chart-box') == 5
    for r in mine:
        assert f'href="/usage/requests/{r.generation_id}/"' in body
    assert f"req-{other.pk}-1" not in body and "gen-1700000000-" + f"{other.pk:04d}" not in body
    assert "upstream_error" in body
    detail = cast.client_for(cast.bob, cast.team).get(f"/usage/requests/{mine[0].generation_id}/")
    assert detail.status_code == 200


def test_a_key_without_requests_says_so(cast: Cast) -> None:
    page = cast.client_for(cast.alice, cast.team).get(f"/keys/{cast.alice_key.api_key.public_id}/")
    body = page.content.decode()
    assert "This key has made no requests yet." in body
    assert page.context["key_usage"]["summary"].overall.requests == 0


def test_another_teams_key_page_is_404(cast: Cast) -> None:
    client = cast.client_for(cast.alice, cast.team)
    assert client.get(f"/keys/{cast.mallory_key.api_key.public_id}/").status_code == 404
