"""What the routing app adds to a key's dashboard page: its usage and limits.

Registered with :func:`keys.panels.key_panel_register` at start-up
(``RoutingConfig.ready``): keys may not import routing. The usage charts
are the usage page's own (:mod:`routing.usage.charts`) over the daily
roll-ups of this key plus its live records since the last roll-up; the
last requests are raw records; the limit
state is read from the store the gateway enforces it in.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Max
from django.http import HttpRequest
from django.utils import timezone

from keys.models import ApiKey
from routing.limits.state import key_limit_state
from routing.models import UsageRollupDay
from routing.usage import charts, selectors

_STATE_OF_FIELD = {"rpm_limit": "r", "tpm_limit": "t", "concurrency_limit": "c", "budget_rub": "b"}
USAGE_DAYS = 14
LAST_REQUESTS = 20


def key_usage_panel(request: HttpRequest, api_key: ApiKey) -> dict[str, Any]:
    """Return the key page's usage charts, last requests and limit state."""
    end = timezone.now().date()
    start = end - timedelta(days=USAGE_DAYS - 1)
    summary = selectors.usage_summary(
        team=api_key.team, start=start, end=end, group="model", key=api_key
    )

    rolled = UsageRollupDay.objects.filter(day__gte=start, day__lte=end).aggregate(
        last=Max("rolled_at")
    )["last"]
    states = key_limit_state(api_key)
    return {
        "key_usage": {
            "start": start,
            "end": end,
            "summary": summary,
            "charts": charts.usage_charts(summary),
            "rolled_at": rolled,
            "records": selectors.usage_record_recent(
                team=api_key.team, key=api_key, limit=LAST_REQUESTS
            ),
        },
        # By form field, so the page shows each state next to its field.
        "key_field_states": {
            field: next((s for s in states if s.scope == "key" and s.kind == kind), None)
            for field, kind in _STATE_OF_FIELD.items()
        },
        "key_model_states": [s for s in states if s.scope == "key-model"],
    }
