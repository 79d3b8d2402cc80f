"""SSE streams at rising concurrency, direct to the streaming upstream and
through the gateway, back to back per level."""

from __future__ import annotations

import argparse
from typing import Any

from context import Bench
from harness import log, memory_of, process_tree
from measure import skipped_without_upstream, stream_ramp, stream_upstream, streams

from scenarios import Scenario


@skipped_without_upstream
def run(bench: Bench) -> dict[str, Any]:
    """Streams at each of ``--stream-levels`` concurrent streams, direct
    to the upstream and through the gateway, back to back per level: the
    TTFT overhead at each level, and so the largest level that meets the
    target on this machine."""
    a = bench.args
    gateway = bench.target("gateway")
    assert gateway.service is not None
    master = gateway.service.proc.pid
    levels: list[dict[str, Any]] = []
    idle = memory_of(master).as_dict()
    ramp = stream_ramp(bench, a.stream_tokens)
    with stream_upstream(bench, a.stream_tokens) as (upstream, direct_url):
        upstream_pids = process_tree(upstream.proc.pid)
        stream_s = a.stream_tokens * a.chunk_interval_ms / 1000
        for count in a.stream_levels:
            bench.settle()
            log(
                f"stream: {count} streams direct to the {a.stream_upstream} upstream "
                f"(~{stream_s:.0f}s each, opened over {ramp}s)"
            )
            direct = streams(
                bench,
                direct_url,
                "gpt-mock",
                count,
                a.stream_tokens,
                cpu_of={"upstream": upstream_pids},
            )
            bench.settle()
            log(f"stream: {count} streams through the gateway")
            relayed = streams(
                bench,
                gateway.url,
                "bench/stream",
                count,
                a.stream_tokens,
                master,
                cpu_of={"gateway": gateway.pids, "upstream": upstream_pids},
            )
            relayed["server_cpu_cores"] = relayed["cpu_cores"]["gateway"]
            events = relayed.get("events_total") or 0
            wall = relayed.get("wall_s") or 0
            if events and wall:
                # Gateway CPU-microseconds per event relayed (request set-up
                # included): cores x seconds / events.
                relayed["gateway_cpu_us_per_event"] = round(
                    relayed["server_cpu_cores"] * wall / events * 1e6, 1
                )
            levels.append({"streams": count, "direct": direct, "gateway": relayed})
    return {
        "upstream": a.stream_upstream,
        "ramp_s": ramp,
        "levels": levels,
        "memory_before": idle,
        "memory_after": memory_of(master).as_dict(),
        "stream_tokens": a.stream_tokens,
        "chunk_interval_ms": a.chunk_interval_ms,
    }


def _levels(text: str) -> list[int]:
    try:
        levels = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not levels or levels[0] < 1 or levels[-1] > 5000:
        raise argparse.ArgumentTypeError("stream levels must be within 1..5000")
    return levels


def add_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--stream-levels",
        type=_levels,
        default="250,500,1000,2000",
        help="comma-separated counts of concurrent streams for the stream scenario",
    )
    group.add_argument("--stream-tokens", type=int, default=200)


SCENARIO = Scenario(
    name="stream",
    order=60,
    run=run,
    add_options=add_options,
    quick={"stream_levels": "20,50", "stream_tokens": 20},
)
