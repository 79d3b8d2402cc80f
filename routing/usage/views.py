"""Usage pages of the dashboard: charts, request log, one request, CSV export.

Everything is read for ``request.membership.team`` only; a request id of
another team answers 404 exactly like one that does not exist. Charts come
from the daily roll-ups plus the few minutes of raw records since the last
one, so their cost does not grow with raw records; the
log and the export read raw records through the ``(team, created_at)``
index, a page at a time or streamed.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any

from django.core.paginator import Paginator
from django.db.models import Max
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import render

from accounts.decorators import TeamRequest, team_required
from routing.models import UsageRollupDay
from routing.usage import charts, selectors
from routing.usage.forms import RequestLogForm, UsageOverviewForm, UsageRangeForm

REQUESTS_PER_PAGE = 50
# Rows of the overview's totals table per page. A team with 1,000 keys drew
# all 1,000 rows: 470 KB of HTML and ~0.6 s of template rendering (issue 19,
# 10M-row bench); the CSV export still has every record.
TOTALS_PER_PAGE = 50
# Deep OFFSET pages get slow on millions of rows; narrow the dates instead.
MAX_PAGE = 200


@team_required
def usage_overview(request: TeamRequest) -> HttpResponse:
    """Per-day charts by model, key or provider, and totals for the range."""
    form = UsageOverviewForm(request.GET or None)
    start, end = form.range()
    group = form.group_value()
    summary = selectors.usage_summary(
        team=request.membership.team, start=start, end=end, group=group
    )
    rolled = UsageRollupDay.objects.filter(day__gte=start, day__lte=end).aggregate(
        last=Max("rolled_at")
    )["last"]
    return render(
        request,
        "usage/overview.html",
        {
            "form": form,
            "start": start,
            "end": end,
            "group": group,
            "summary": summary,
            "totals": Paginator(summary.totals, TOTALS_PER_PAGE).get_page(request.GET.get("page")),
            "charts": charts.usage_charts(summary),
            "rolled_at": rolled,
        },
    )


@team_required
def usage_requests(request: TeamRequest) -> HttpResponse:
    """The request log: raw records newest first, with search by request id."""
    form = RequestLogForm(request.GET or None)
    start, end = form.range()
    request_id = form.cleaned_data.get("request_id", "").strip() if form.is_valid() else ""
    try:
        page = min(max(1, int(request.GET.get("page", "1"))), MAX_PAGE)
    except ValueError:
        page = 1
    records = selectors.usage_record_list(
        team=request.membership.team, start=start, end=end, request_id=request_id
    )
    offset = (page - 1) * REQUESTS_PER_PAGE
    # One row more than a page tells whether a next page exists without
    # counting millions of rows.
    rows = list(records[offset : offset + REQUESTS_PER_PAGE + 1])
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "usage/requests.html",
        {
            "form": form,
            "records": rows[:REQUESTS_PER_PAGE],
            "page": page,
            "has_next": len(rows) > REQUESTS_PER_PAGE and page < MAX_PAGE,
            "query": query.urlencode(),
            "start": start,
            "end": end,
            "request_id": request_id,
        },
    )


@team_required
def usage_request_detail(request: TeamRequest, request_id: str) -> HttpResponse:
    """One request: models, provider, attempts, tokens, cost and timings."""
    record = selectors.usage_record_get(request_id=request_id, team_id=request.membership.team.pk)
    if record is None:
        raise Http404
    return render(request, "usage/request_detail.html", {"record": record})


def _cell(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    # Model names come from clients: a leading =, +, - or @ would run as a
    # formula when the file is opened in a spreadsheet.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


class _Echo:
    """A file-like object whose ``write`` returns the line for streaming."""

    def write(self, value: str) -> str:
        return value


@team_required
def usage_export(request: TeamRequest) -> StreamingHttpResponse:
    """Stream the team's raw records in the date range as CSV."""
    form = UsageRangeForm(request.GET or None)
    start, end = form.range()
    writer: Any = csv.writer(_Echo())
    rows = selectors.usage_record_export_rows(team=request.membership.team, start=start, end=end)

    def lines() -> Iterator[str]:
        yield writer.writerow(selectors.CSV_COLUMNS)
        for row in rows:
            yield writer.writerow([_cell(value) for value in row])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    filename = f"xrouter-usage-{request.membership.team.slug}-{start}-{end}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response
