"""Fixtures of the usage tests: the named cast, usage records, Chromium.

Records are written through :func:`routing.usage.records.write_events`, the
function the usage writers call, so tests store rows the way production
does.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import pytest

from accounts.models import Team
from routing.usage import records as usage
from tests.accounts.cast import Cast, build_cast

_ids = itertools.count(1)


@pytest.fixture
def cast(team: Team, other_team: Team) -> Cast:
    return build_cast(team=team, other_team=other_team)


@pytest.fixture
def record_usage() -> Callable[..., usage.UsageEvent]:
    """Write one usage record now; keyword arguments override the defaults."""

    def record(**fields: Any) -> usage.UsageEvent:
        fields.setdefault("request_id", f"req-{next(_ids)}-{time.monotonic_ns()}")
        fields.setdefault("created", time.time())
        fields.setdefault("endpoint", "chat")
        fields.setdefault("requested_model", "local/mock")
        fields.setdefault("served_model", fields["requested_model"])
        fields.setdefault("provider", "local")
        fields.setdefault("prompt_tokens", 10)
        fields.setdefault("completion_tokens", 20)
        fields.setdefault("cost_rub", "0.035")
        fields.setdefault("latency_ms", 120.0)
        event = usage.UsageEvent(**fields)
        usage.write_events([event])
        return event

    return record
