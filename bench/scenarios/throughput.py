"""Requests per second: nginx direct, the gateway, and the gateway with its
access log off."""

from __future__ import annotations

import argparse
from typing import Any

from context import Bench
from measure import throughput
from targets import Target, start_gunicorn, starter

from scenarios import Scenario


@starter("gateway_requests")
def _gateway_requests(bench: Bench) -> Target:
    # The upstream client before issue 19, for the wire client's gain.
    env = {**bench.env, "XROUTER_UPSTREAM_CLIENT": "requests"}
    return start_gunicorn(bench, "gateway_requests", env=env)


@starter("gateway_nolog")
def _gateway_nolog(bench: Bench) -> Target:
    return start_gunicorn(bench, "gateway_nolog", env={**bench.env, "XROUTER_ACCESS_LOG": "false"})


def run(bench: Bench) -> dict[str, Any]:
    """Closed-loop req/s of nginx direct and the gateway (wrk, 64 connections)."""
    out = {"direct": throughput(bench, "direct"), "gateway": throughput(bench, "gateway")}
    if bench.args.access_log_off:
        # One gateway at a time: two would share the Redis usage stream,
        # and the idle one's consumers would burn CPU on the other's load.
        bench.stop_target("gateway")
        out["gateway_nolog"] = throughput(bench, "gateway_nolog")
        bench.stop_target("gateway_nolog")
    if bench.args.client_variant:
        bench.stop_target("gateway")
        out["gateway_requests"] = throughput(bench, "gateway_requests")
        bench.stop_target("gateway_requests")
    return out


def add_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--no-access-log-variant",
        dest="access_log_off",
        action="store_false",
        help="skip the extra throughput run with XROUTER_ACCESS_LOG=false",
    )
    group.add_argument(
        "--no-client-variant",
        dest="client_variant",
        action="store_false",
        help="skip the extra throughput run with XROUTER_UPSTREAM_CLIENT=requests",
    )


SCENARIO = Scenario(name="throughput", order=10, run=run, add_options=add_options)
