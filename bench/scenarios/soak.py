"""Steady open-loop load for minutes: errors and memory growth (leaks)."""

from __future__ import annotations

import argparse
import json
import subprocess
import threading
import time
from typing import Any

from context import Bench
from harness import BenchError, log, memory_of, run_wrk
from measure import openloop_argv

from scenarios import Scenario


def _growth_pct(first: float, last: float) -> float:
    return round((last - first) / first * 100, 1)


def run(bench: Bench) -> dict[str, Any]:
    """Steady open-loop load for ``--soak-duration`` seconds: errors, and
    whether the workers' memory keeps growing (a leak) or levels off."""
    a = bench.args
    target = bench.target("gateway")
    assert target.service is not None
    bench.settle()
    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    if a.soak_driver == "wrk":
        log(f"soak: wrk at {a.soak_connections} connections for {a.soak_duration:.0f}s")
        done: list[Any] = []
        runner = threading.Thread(
            target=lambda: done.append(
                run_wrk(
                    bench.tools["wrk"],
                    target.url,
                    target.script,
                    connections=a.soak_connections,
                    threads=2,
                    seconds=a.soak_duration,
                    latency=True,
                )
            ),
            daemon=True,
        )
        runner.start()
        while runner.is_alive():
            mem = memory_of(target.service.proc.pid)
            samples.append({"t_s": round(time.monotonic() - started, 1), **mem.as_dict()})
            runner.join(timeout=a.soak_sample_every)
        if not done:
            raise BenchError("wrk failed in the soak (see the log above)")
        wrk = done[0]
        result = {
            "completed": wrk.requests,
            "errors": wrk.socket_errors,
            "non_2xx": wrk.non_2xx,
            "latency_ms": wrk.latency_ms,
            "rps": wrk.rps,
            "driver": f"wrk, {a.soak_connections} connections (closed loop)",
        }
        return _finish(result, samples, a, rate=wrk.rps)
    log(f"soak: {a.soak_rate:.0f} req/s for {a.soak_duration:.0f}s (open loop)")
    argv = openloop_argv(bench, target.url, a.soak_rate, a.soak_duration)
    driver = subprocess.Popen(  # noqa: S603 - our own driver, fixed argv
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        while driver.poll() is None:
            mem = memory_of(target.service.proc.pid)
            samples.append({"t_s": round(time.monotonic() - started, 1), **mem.as_dict()})
            try:
                driver.wait(timeout=a.soak_sample_every)
            except subprocess.TimeoutExpired:
                pass
        out, err = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    if driver.returncode != 0:
        raise BenchError(f"openloop.py failed in the soak: {err[-1500:]}")
    result: dict[str, Any] = json.loads(out)
    result["driver"] = "bench/openloop.py (open loop)"
    return _finish(result, samples, a, rate=a.soak_rate)


def _finish(
    result: dict[str, Any], samples: list[dict[str, Any]], a: argparse.Namespace, *, rate: float
) -> dict[str, Any]:
    # Growth is judged after the first minute: caches, pools and pymalloc
    # arenas fill up early and then should stay flat.
    warm = next((m for m in samples if m["t_s"] >= 60), samples[0]) if samples else None
    last = samples[-1] if samples else None
    if warm and last:
        result["rss_warm_mb"], result["rss_end_mb"] = warm["rss_mb"], last["rss_mb"]
        result["rss_max_mb"] = max(m["rss_mb"] for m in samples)
        result["rss_first_mb"] = samples[0]["rss_mb"]
        result["rss_growth_pct"] = _growth_pct(warm["rss_mb"], last["rss_mb"])
        result["pss_growth_pct"] = _growth_pct(warm["pss_mb"], last["pss_mb"])
    # A 4xx/5xx answer is as much a failure as a socket error here.
    result["failed"] = result.get("errors", 0) + result.get("non_2xx", 0)
    result["memory_samples"] = samples
    result["rate"] = rate
    result["duration_s"] = a.soak_duration
    return result


def add_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--soak-duration", type=float, default=600.0, help="soak seconds")
    group.add_argument("--soak-rate", type=float, default=300.0, help="soak requests/s")
    group.add_argument(
        "--soak-driver",
        choices=("openloop", "wrk"),
        default="openloop",
        help="openloop: --soak-rate fixed; wrk: as fast as --soak-connections go (1M+ requests)",
    )
    group.add_argument("--soak-connections", type=int, default=64)
    group.add_argument(
        "--soak-sample-every", type=float, default=15.0, help="seconds between RSS samples"
    )


def check(args: argparse.Namespace) -> str | None:
    if not 10 <= args.soak_duration <= 3600:
        return "--soak-duration must be within 10..3600 s"
    return None


SCENARIO = Scenario(
    name="soak",
    order=100,
    run=run,
    add_options=add_options,
    quick={"soak_duration": 10.0, "soak_rate": 100.0, "soak_sample_every": 2.0},
    check=check,
)
