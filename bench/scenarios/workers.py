"""gevent against gthread workers under long streams plus short requests."""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

from context import Bench
from harness import cpu_seconds, log, memory_of, run_wrk
from measure import skipped_without_upstream, stream_ramp, stream_upstream, streams
from targets import Target, start_gunicorn, starter

from scenarios import Scenario

WRK_CONNECTIONS = 16


@starter("gateway_gthread")
def _gateway_gthread(bench: Bench) -> Target:
    # The same gateway under gunicorn's threaded worker (the command line
    # overrides the config file's worker class).
    threads = str(bench.args.gthread_threads)
    extra = ["--worker-class", "gthread", "--threads", threads]
    return start_gunicorn(bench, "gateway_gthread", extra=extra)


@skipped_without_upstream
def run(bench: Bench) -> dict[str, Any]:
    """gevent vs gthread under the mixed workload the gateway serves:
    long SSE streams held open while short requests keep coming."""
    a = bench.args
    out: dict[str, Any] = {
        "streams": a.mix_streams,
        "connections": WRK_CONNECTIONS,
        "threads_per_worker": a.gthread_threads,
    }
    tokens = int((a.mix_seconds + 4) * 1000 / a.chunk_interval_ms)
    with stream_upstream(bench, tokens):
        for kind in ("gevent", "gthread"):
            target = bench.target("gateway" if kind == "gevent" else "gateway_gthread")
            assert target.service is not None
            bench.settle()
            log(
                f"workers {kind}: {a.mix_streams} streams + wrk {WRK_CONNECTIONS} connections, "
                f"{a.mix_seconds:.0f}s"
            )
            pids = target.pids
            cpu0, t0 = cpu_seconds(pids), time.monotonic()
            streams_result: dict[str, Any] = {}

            def streams_load(
                url: str = target.url, box: dict[str, Any] = streams_result, master: int = pids[0]
            ) -> None:
                box.update(streams(bench, url, "bench/stream", a.mix_streams, tokens, master))

            streamer = threading.Thread(target=streams_load, daemon=True)
            streamer.start()
            # Let the streams open before the short requests start.
            time.sleep(min(3.0, stream_ramp(bench, tokens)) + 1)
            wrk = run_wrk(
                bench.tools["wrk"],
                target.url,
                target.script,
                connections=WRK_CONNECTIONS,
                threads=2,
                seconds=a.mix_seconds,
                latency=True,
            )
            streamer.join(timeout=tokens * a.chunk_interval_ms / 1000 * 3 + 90)
            elapsed = time.monotonic() - t0
            out[kind] = {
                "requests": wrk.as_dict(),
                "streams": streams_result,
                "server_cpu_cores": round((cpu_seconds(pids) - cpu0) / elapsed, 2),
                "memory_after": memory_of(target.service.proc.pid).as_dict(),
            }
        # The gevent gateway stays up for the scenarios after this one.
        bench.stop_target("gateway_gthread")
    return out


def add_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--mix-streams", type=int, default=200, help="streams held open in the workers scenario"
    )
    group.add_argument(
        "--mix-seconds", type=float, default=15.0, help="seconds of wrk in the workers scenario"
    )
    group.add_argument(
        "--gthread-threads",
        type=int,
        default=128,
        help="threads per worker for the gthread variant (one per open stream)",
    )


SCENARIO = Scenario(
    name="workers",
    order=70,
    run=run,
    add_options=add_options,
    quick={"mix_streams": 20, "mix_seconds": 3.0},
)
