"""The gateway's memory idle and after the throughput load."""

from __future__ import annotations

from typing import Any

from context import Bench
from measure import throughput

from scenarios import Scenario


def run(bench: Bench) -> dict[str, Any]:
    """RSS and PSS of the gateway idle and after the throughput load."""
    bench.target("gateway")
    after = throughput(bench, "gateway")["memory_after"]
    return {"idle": bench.results["memory_idle"], "after_throughput": after}


SCENARIO = Scenario(name="memory", order=50, run=run)
