"""The gateway against a bare WSGI proxy under the same gunicorn.

bench/bare_proxy.py only forwards: the gap is what the gateway's own work
(keys, limits, usage, metrics, logs) costs.
"""

from __future__ import annotations

from typing import Any

from context import BENCH, Bench
from harness import memory_of
from measure import latency_wrk, open_loop, throughput
from targets import Target, start_gunicorn, starter

from scenarios import Scenario


@starter("bare")
def _bare(bench: Bench) -> Target:
    env = {**bench.env, "BENCH_UPSTREAM_URL": bench.targets["direct"].url}
    env.pop("XROUTER_CATALOG")  # the gunicorn hook would load it for nothing
    target = start_gunicorn(
        bench,
        "bare",
        "bare_proxy:application",
        env,
        ["--pythonpath", str(BENCH)],
        config=BENCH / "bare_gunicorn.conf.py",
    )
    assert target.service is not None
    bench.results["memory_idle_bare"] = memory_of(target.service.proc.pid).as_dict()
    return target


def run(bench: Bench) -> dict[str, Any]:
    """Throughput and latency of the gateway next to a bare WSGI proxy."""
    names = ("bare", "gateway")
    out = {
        "throughput": {name: throughput(bench, name) for name in names},
        "wrk": {name: latency_wrk(bench, name) for name in names},
        "open_loop": {name: open_loop(bench, name) for name in names},
        "memory_idle_bare": bench.results.get("memory_idle_bare"),
    }
    bench.stop_target("bare")
    return out


SCENARIO = Scenario(name="baseline", order=30, run=run)
