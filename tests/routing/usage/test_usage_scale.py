"""The usage pages at 1 million raw records: < 500 ms each, drawn in Chromium.

Seeding uses one PostgreSQL ``INSERT ... SELECT generate_series`` (30 days,
two teams, five keys, four models on two providers, 3% errors), then the
daily roll-up service, then each page is timed through the Django test
client (server time: routing, queries, template rendering). The charts are
then opened in headless Chromium from the live server and screenshotted.
"""

from __future__ import annotations

import statistics
import time
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

pytestmark = pytest.mark.slow

ROWS = 1_000_000
DAYS = 30
BUDGET_SECONDS = 0.5

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


def server_time(client: Client, url: str, **extra: Any) -> float:
    """Return the median of three timed requests, after one warm-up."""
    assert client.get(url, **extra).status_code == 200, url
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        response = client.get(url, **extra)
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200, url
    return statistics.median(timings)


def test_pages_stay_fast_at_a_million_rows_and_render_in_chromium(
    transactional_db: None,
    live_server: Any,
    cast: Cast,
    chromium: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every usage page answers in < 500 ms with 1M raw records; charts draw."""
    from tests.browser.conftest import SCREENSHOTS

    keys = [cast.alice_key.api_key.pk] + [
        api_key_create(team=cast.team, name=f"service {i}").api_key.pk for i in range(4)
    ]
    end = timezone.now().replace(microsecond=0)
    started = time.perf_counter()
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
    seeded = time.perf_counter() - started
    assert UsageRecord.objects.count() == ROWS
    started = time.perf_counter()
    first_day = (end - timedelta(days=DAYS)).date()
    rollups.usage_rollup_range(start=first_day, end=end.date())
    rolled = time.perf_counter() - started
    assert sum(UsageDaily.objects.values_list("requests", flat=True)) == ROWS

    client = cast.client_for(cast.alice)
    request_id = UsageRecord.objects.filter(key=cast.alice_key.api_key).values_list(
        "request_id", flat=True
    )[:1][0]
    range_q = f"start={first_day}&end={end.date()}"
    pages = {
        "overview by model": f"/usage/?{range_q}&group=model",
        "overview by key": f"/usage/?{range_q}&group=key",
        "overview by provider": f"/usage/?{range_q}&group=provider",
        "request log": f"/usage/requests/?{range_q}",
        "request log page 20": f"/usage/requests/?{range_q}&page=20",
        "request log search": f"/usage/requests/?{range_q}&request_id={request_id}",
        "request detail": f"/usage/requests/{request_id}/",
    }
    timings = {name: server_time(client, url) for name, url in pages.items()}
    timings["generation API"] = server_time(
        Client(),
        f"/api/v1/generation?id={request_id}",
        HTTP_AUTHORIZATION=f"Bearer {cast.alice_key.plaintext}",
    )
    with capsys.disabled():
        print(f"\nseeded {ROWS} rows in {seeded:.1f} s, rolled up in {rolled:.1f} s")
        for name, seconds in timings.items():
            print(f"  {name}: {seconds * 1000:.0f} ms")
    slow = {name: seconds for name, seconds in timings.items() if seconds >= BUDGET_SECONDS}
    assert not slow, slow

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
