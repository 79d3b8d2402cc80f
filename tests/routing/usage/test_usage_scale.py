"""The usage pages over many raw records: right totals, one team's data, drawn in Chromium.

Seeding uses one PostgreSQL ``INSERT ... SELECT generate_series`` (30 days,
two teams, five keys, four models on two providers, 3% errors), then the
daily roll-up service, then every page is fetched through the Django test
client and the charts are opened in headless Chromium from the live server
and screenshotted.

How fast these pages are at 10 million rows is measured by the benchmark
(``python bench/run.py scale``, results in bench/RESULTS.md), not here: a
timed assertion on these shared 2-core machines measures the neighbours.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from keys.services import api_key_create
from routing.models import UsageDaily, UsageRecord
from routing.usage import rollups
from tests.accounts.cast import Cast

# Seeding, the roll-up and a browser: minutes on a loaded 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROWS = 100_000
DAYS = 30

SEED_SQL = """
INSERT INTO routing_usagerecord (
    request_id, created_at, team_id, key_id, oauth_app, endpoint, requested_model,
    served_model, model_version, provider, deployment_id, attempts, prompt_tokens,
    completion_tokens, cached_tokens, cost_rub, status, error_code, latency_ms,
    ttft_ms, stream, stream_complete)
SELECT
    'seed-' || g,
    %(end)s - (g::double precision / %(rows)s) * %(days)s * interval '1 day',
    CASE WHEN g %% 10 = 0 THEN %(other_team)s ELSE %(team)s END,
    CASE WHEN g %% 10 = 0 THEN %(other_key)s ELSE (%(keys)s)[1 + g %% 5] END,
    '', 'chat', m.model, CASE WHEN g %% 33 = 0 THEN '' ELSE m.model END, '',
    CASE WHEN g %% 33 = 0 THEN '' ELSE m.provider END, NULL, '[]'::jsonb,
    50 + g %% 400, 20 + g %% 700, 0,
    ((50 + g %% 400) * 0.5 + (20 + g %% 700) * 1.5) / 1000,
    CASE WHEN g %% 33 = 0 THEN 502 ELSE 200 END,
    CASE WHEN g %% 33 = 0 THEN 'upstream_error' ELSE '' END,
    (40 + (g::bigint * 7919) %% 2500)::int, NULL, false, NULL
FROM generate_series(1, %(rows)s) AS g
JOIN (VALUES (0, 'gigachat/lite', 'gigachat'), (1, 'gigachat/pro', 'gigachat'),
             (2, 'yandexgpt/lite', 'yandexgpt'), (3, 'yandexgpt/pro', 'yandexgpt'))
     AS m(i, model, provider) ON m.i = (g / 7) %% 4
"""


def fetch(client: Client, url: str, **extra: Any) -> bytes:
    """Return the body of a page that must answer 200."""
    response = client.get(url, **extra)
    assert response.status_code == 200, url
    return response.content


def test_pages_over_many_rows_show_one_team_and_render_in_chromium(
    transactional_db: None,
    live_server: Any,
    cast: Cast,
    chromium: Any,
) -> None:
    """Roll-ups add up, every page answers for our team only, and the charts draw."""
    from tests.browser.conftest import SCREENSHOTS

    keys = [cast.alice_key.api_key.pk] + [
        api_key_create(team=cast.team, name=f"service {i}").api_key.pk for i in range(4)
    ]
    end = timezone.now().replace(microsecond=0)
    with connection.cursor() as cursor:
        cursor.execute(
            SEED_SQL,
            {
                "end": end,
                "rows": ROWS,
                "days": DAYS,
                "team": cast.team.pk,
                "other_team": cast.other_team.pk,
                "other_key": cast.mallory_key.api_key.pk,
                "keys": keys,
            },
        )
        cursor.execute("ANALYZE routing_usagerecord")
    assert UsageRecord.objects.count() == ROWS
    first_day = (end - timedelta(days=DAYS)).date()
    rollups.usage_rollup_range(start=first_day, end=end.date())
    assert sum(UsageDaily.objects.values_list("requests", flat=True)) == ROWS
    ours = UsageDaily.objects.filter(team=cast.team)
    assert sum(ours.values_list("requests", flat=True)) == ROWS - ROWS // 10

    client = cast.client_for(cast.alice)
    request_id = UsageRecord.objects.filter(key=cast.alice_key.api_key).values_list(
        "request_id", flat=True
    )[:1][0]
    # Every tenth seeded row is the other team's: never visible to ours.
    theirs = "seed-10"
    range_q = f"start={first_day}&end={end.date()}"
    for group in ("model", "key", "provider"):
        fetch(client, f"/usage/?{range_q}&group={group}")
    search = f"/usage/requests/?{range_q}&request_id={request_id}"
    assert request_id.encode() in fetch(client, search)
    fetch(client, f"/usage/requests/?{range_q}&page=20")
    assert request_id.encode() in fetch(client, f"/usage/requests/{request_id}/")
    assert client.get(f"/usage/requests/{theirs}/").status_code == 404
    found = fetch(client, f"/usage/requests/?{range_q}&request_id={theirs}")
    # The search box echoes the id; no row links to the record.
    assert f"/usage/requests/{theirs}/".encode() not in found
    generation = Client().get(
        f"/api/v1/generation?id={request_id}",
        HTTP_AUTHORIZATION=f"Bearer {cast.alice_key.plaintext}",
    )
    assert generation.status_code == 200
    assert generation.json()["data"]["id"] == request_id

    session = client.cookies["sessionid"].value
    context = chromium.new_context(viewport={"width": 1280, "height": 1400}, locale="en-US")
    try:
        context.add_cookies([{"name": "sessionid", "value": session, "url": live_server.url}])
        page = context.new_page()
        page.goto(f"{live_server.url}/usage/?{range_q}&group=model")
        charts = page.locator("svg.chart")
        assert charts.count() == 5
        # Each bar chart draws a bar per day and model; the line chart a point per day.
        assert page.locator("svg.chart").first.locator("rect").count() >= DAYS * 4
        box = charts.first.bounding_box()
        assert box is not None and box["width"] > 400 and box["height"] > 150
        assert page.locator(".legend li").filter(has_text="gigachat/pro").count() == 1
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "usage-dashboard.png"), full_page=True)
        page.goto(f"{live_server.url}/usage/requests/?{range_q}")
        assert page.locator("tbody tr").count() == 50
        page.screenshot(path=str(SCREENSHOTS / "usage-request-log.png"))
    finally:
        context.close()
