"""What rate limits and usage+metrics cost: the gateway with each on and off."""

from __future__ import annotations

from typing import Any

from context import Bench
from harness import write_wrk_script
from measure import throughput
from services import create_key
from targets import Target, start_gunicorn, starter

from scenarios import Scenario


@starter("gateway_limits")
def _gateway_limits(bench: Bench) -> Target:
    # A key with every rate limit set (far above what wrk can send), so the
    # limiter's script runs on each request and settles after it. The
    # production gateway; only the key differs.
    limits = ("--rpm", "100000000", "--tpm", "2000000000", "--concurrency", "100000")
    key = create_key(bench.app_dir, bench.env, "bench-limited", *limits)
    script = bench.wrk_script.with_name("limited.lua")
    write_wrk_script(script, key)
    target = start_gunicorn(bench, "gateway_limits")
    return Target(target.service, target.url, script)


@starter("gateway_lean")
def _gateway_lean(bench: Bench) -> Target:
    env = {
        **bench.env,
        "XROUTER_USAGE_RECORDS_ENABLED": "false",
        "XROUTER_METRICS_ENABLED": "false",
    }
    return start_gunicorn(bench, "gateway_lean", env=env)


def run(bench: Bench) -> dict[str, Any]:
    """Throughput with limits on vs off, and usage+metrics on vs off.

    Each variant runs alone (one gateway at a time) right after the
    production gateway is measured, so the ratios share the machine's
    state as closely as a noisy machine allows.
    """
    out: dict[str, Any] = {}
    for variant in ("gateway_limits", "gateway_lean"):
        bench.forget("throughput", "gateway")
        bench.stop_target("gateway")
        base = throughput(bench, "gateway")
        bench.stop_target("gateway")
        out[variant] = {"gateway": base, variant: throughput(bench, variant)}
        bench.stop_target(variant)
    return out


SCENARIO = Scenario(name="features", order=40, run=run)
