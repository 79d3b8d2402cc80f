"""Usage pages: charts, request log, one request, CSV export; team-scoped."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from datetime import timedelta

from django.test import Client
from django.utils import timezone

from routing.usage import rollups, views
from tests.accounts.cast import Cast


def test_pages_need_login(cast: Cast) -> None:
    """Anonymous visitors are sent to the login page."""
    for url in ("/usage/", "/usage/requests/", "/usage/export.csv", "/usage/requests/x/"):
        response = Client().get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/?next=")


def test_overview_charts_show_only_the_current_team(
    cast: Cast, record_usage: Callable[..., object]
) -> None:
    """Charts and totals come from the team's roll-ups, never another team's."""
    key = cast.alice_key.api_key
    record_usage(team_id=cast.team.pk, key_id=key.pk, requested_model="local/mock")
    record_usage(team_id=cast.team.pk, key_id=key.pk, status=502, served_model="")
    record_usage(
        team_id=cast.other_team.pk,
        key_id=cast.mallory_key.api_key.pk,
        requested_model="secret/globex-model",
    )
    rollups.usage_rollup_recent()
    bob = cast.client_for(cast.bob)
    html = bob.get("/usage/").content.decode()
    assert html.count('<svg class="chart"') == 5
    assert "local/mock" in html and "secret/globex-model" not in html
    # The day's tooltip names each series with its exact value.
    assert "local/mock: <b>2</b>" in html
    by_key = bob.get("/usage/?group=key").content.decode()
    assert f"acme prod ({key.masked})" in by_key and "globex prod" not in by_key
    assert "local" in bob.get("/usage/?group=provider").content.decode()
    # A bad range falls back to the default instead of failing.
    assert bob.get("/usage/?start=2026-12-31&end=2026-01-01").status_code == 200


def test_overview_totals_come_in_pages_busiest_first(
    cast: Cast, record_usage: Callable[..., object]
) -> None:
    """More series than a page holds: the busiest first, the rest on page 2."""
    key = cast.alice_key.api_key
    per_page = views.TOTALS_PER_PAGE
    for n in range(per_page + 3):
        # Model m/000 is the busiest: it gets a second request.
        for _ in range(2 if n == 0 else 1):
            record_usage(team_id=cast.team.pk, key_id=key.pk, requested_model=f"m/{n:03d}")
    rollups.usage_rollup_recent()
    bob = cast.client_for(cast.bob)

    first = bob.get("/usage/").content.decode()
    second = bob.get("/usage/?group=model&page=2").content.decode()

    rows = [line for line in first.split("<tr>") if "<code>m/" in line]
    assert len(rows) == per_page and "<code>m/000</code>" in rows[0]
    assert "page=2" in first and 'rel="next"' in first
    rest = [line for line in second.split("<tr>") if "<code>m/" in line]
    assert len(rest) == 3 and 'rel="prev"' in second
    shown = {line.split("<code>")[1].split("</code>")[0] for line in rows + rest}
    assert shown == {f"m/{n:03d}" for n in range(per_page + 3)}
    # A page past the end shows the last one instead of failing.
    assert bob.get("/usage/?page=99").status_code == 200


def test_request_log_search_and_detail_404_for_other_teams(
    cast: Cast, record_usage: Callable[..., object]
) -> None:
    """Search is by exact request id; another team's request answers 404."""
    mine = record_usage(team_id=cast.team.pk, key_id=cast.alice_key.api_key.pk)
    theirs = record_usage(team_id=cast.other_team.pk, key_id=cast.mallory_key.api_key.pk)
    alice = cast.client_for(cast.alice)
    log = alice.get("/usage/requests/").content.decode()
    assert mine.request_id in log and theirs.request_id not in log
    found = alice.get("/usage/requests/", {"request_id": mine.request_id}).content.decode()
    assert mine.request_id in found
    hidden = alice.get("/usage/requests/", {"request_id": theirs.request_id}).content.decode()
    assert f"/usage/requests/{theirs.request_id}/" not in hidden
    assert "No request with this ID in this period." in hidden
    assert alice.get(f"/usage/requests/{mine.request_id}/").status_code == 200
    assert alice.get(f"/usage/requests/{theirs.request_id}/").status_code == 404
    mallory = cast.client_for(cast.mallory)
    assert mallory.get(f"/usage/requests/{mine.request_id}/").status_code == 404


def test_request_log_pages_without_counting(
    cast: Cast, record_usage: Callable[..., object]
) -> None:
    """55 records make two pages: 50 newest, then 5."""
    start = time.time() - 100
    for i in range(55):
        record_usage(team_id=cast.team.pk, key_id=None, created=start + i)
    alice = cast.client_for(cast.alice)
    first = alice.get("/usage/requests/").content.decode()
    assert first.count('href="/usage/requests/req-') == 50 and 'rel="next"' in first
    second = alice.get("/usage/requests/?page=2").content.decode()
    assert second.count('href="/usage/requests/req-') == 5 and 'rel="next"' not in second


def test_csv_export_streams_the_team_records(
    cast: Cast, record_usage: Callable[..., object]
) -> None:
    """The export is streamed CSV of this team's records, formula-safe."""
    mine = record_usage(
        team_id=cast.team.pk, key_id=cast.alice_key.api_key.pk, requested_model="=cmd()"
    )
    record_usage(team_id=cast.other_team.pk, key_id=None)
    old = record_usage(
        team_id=cast.team.pk,
        key_id=None,
        created=(timezone.now() - timedelta(days=40)).timestamp(),
    )
    response = cast.client_for(cast.bob).get("/usage/export.csv")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="xrouter-usage-acme-')
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["request_id"] for row in rows] == [mine.request_id]
    assert rows[0]["key_name"] == "acme prod"
    assert rows[0]["requested_model"] == "'=cmd()"
    assert rows[0]["cost_rub"] == "0.035000"
    wide = cast.client_for(cast.bob).get(
        "/usage/export.csv", {"start": (timezone.now() - timedelta(days=60)).date().isoformat()}
    )
    ids = [
        row["request_id"]
        for row in csv.DictReader(io.StringIO(b"".join(wide.streaming_content).decode()))
    ]
    assert ids == [old.request_id, mine.request_id]


def test_nav_links_to_usage_in_russian(cast: Cast) -> None:
    """The page header links to the usage page, translated."""
    alice = cast.client_for(cast.alice)
    html = alice.get("/usage/", HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    assert 'href="/usage/" aria-current="page">Расход</a>' in html
    assert "Журнал запросов" in html
