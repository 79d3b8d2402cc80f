"""Where a gateway worker spends its CPU: py-spy under requests and streams."""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Callable
from typing import Any

from context import BENCH, Bench
from harness import gunicorn_workers, log, run_wrk
from measure import StreamUpstreamMissing, stream_upstream, streams
from profile_summary import summarize

from scenarios import Scenario


def _py_spy(
    bench: Bench, worker: int, seconds: int, label: str, load: Callable[[], None]
) -> dict[str, Any]:
    """Sample one worker with py-spy while ``load`` runs; return the summary."""
    raw = bench.workdir / f"profile-{label}.txt"
    argv = [bench.tools["py_spy"], "record", "--pid", str(worker), "--duration", str(seconds)]
    # raw = collapsed stacks (text); --threads separates gevent's native
    # threadpool from the request loop (see profile_summary).
    argv += ["--rate", "200", "--format", "raw", "--full-filenames", "--nolineno"]
    argv += ["--threads", "--output", str(raw)]
    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = ""
    try:
        load()
        _, err = spy.communicate(timeout=60)
    finally:
        if spy.poll() is None:
            spy.terminate()
            spy.wait(10)
    if spy.returncode != 0 or not raw.exists():
        return {"skipped": f"py-spy failed: {err.strip()[-300:]}"}
    return summarize(raw.read_text(), top=bench.args.profile_top, label=label)


def run(bench: Bench) -> dict[str, Any]:
    """py-spy on one gateway worker under wrk, then during SSE streams."""
    a = bench.args
    if not bench.tools.get("py_spy"):
        return {"skipped": "py-spy is not installed"}
    target = bench.target("gateway")
    assert target.service is not None
    workers = gunicorn_workers(target.service.proc.pid)
    if not workers:
        return {"skipped": "no gunicorn worker found"}
    seconds = a.profile_seconds
    bench.settle()
    log(f"profile: py-spy on worker {workers[0]} for {seconds}s under wrk, 64 connections")
    out: dict[str, Any] = {}

    def requests_load() -> None:
        wrk = bench.tools["wrk"]
        run_wrk(wrk, target.url, target.script, connections=64, threads=2, seconds=seconds + 2)

    out["requests"] = _py_spy(
        bench, workers[0], seconds, "requests (wrk, 64 connections, non-streaming)", requests_load
    )
    # Streams: enough tokens to outlast the sampling window.
    tokens = int((seconds + 4) * 1000 / a.chunk_interval_ms)
    try:
        with stream_upstream(bench, tokens):
            log(f"profile: py-spy on worker {workers[0]} during {a.streams} streams")

            def streams_load() -> None:
                streams(bench, target.url, "bench/stream", a.streams, tokens)

            out["streams"] = _py_spy(
                bench,
                workers[0],
                seconds,
                f"streams ({a.streams} concurrent SSE streams relayed)",
                streams_load,
            )
    except StreamUpstreamMissing as exc:
        out["streams"] = {"skipped": str(exc)}
    texts = [v.pop("text") for v in out.values() if "text" in v]
    if texts:
        # Beside the report that refers to it (bench/ unless --results moves it).
        folder = BENCH if str(a.results) == "-" else a.results.parent
        (folder / "profile.txt").write_text("\n\n".join(texts))
    return out


def add_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--streams",
        type=int,
        default=2000,
        help="concurrent SSE streams while profiling",
    )
    group.add_argument("--profile-seconds", type=int, default=10)
    group.add_argument("--profile-top", type=int, default=25)


def check(args: argparse.Namespace) -> str | None:
    return "streams are capped at 5000" if args.streams > 5000 else None


SCENARIO = Scenario(
    name="profile",
    order=80,
    run=run,
    add_options=add_options,
    quick={"streams": 50, "profile_seconds": 3},
    check=check,
    needs_py_spy=True,
)
