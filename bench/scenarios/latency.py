"""Latency the gateway adds over nginx direct, closed and open loop."""

from __future__ import annotations

from typing import Any

from context import Bench
from measure import latency_wrk, open_loop

from scenarios import Scenario


def run(bench: Bench) -> dict[str, Any]:
    """Added latency over nginx direct: wrk --latency and a fixed-rate open loop."""
    names = ("direct", "gateway")
    return {
        "wrk": {name: latency_wrk(bench, name) for name in names},
        "open_loop": {name: open_loop(bench, name) for name in names},
    }


SCENARIO = Scenario(name="latency", order=20, run=run)
