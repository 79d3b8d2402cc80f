"""The measurements scenarios are made of, and the CPU meters around them.

``throughput``, ``latency_wrk`` and ``open_loop`` are taken once per run
and target (:meth:`Bench.memo`): a scenario asking for a figure another one
already took gets the same figure. ``streams`` runs the SSE driver against
the streaming upstream that :func:`stream_upstream` provides.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from context import BENCH, REPO, Bench
from harness import (
    HOST,
    REQUEST_BODY,
    BenchError,
    Service,
    cpu_seconds,
    log,
    memory_of,
    run_json_driver,
    run_wrk,
    start_stream_nginx,
    wait_http,
)
from targets import CHAT_PATH, Target

BACKING_SERVICES = ("postgres", "redis-server")


# --- CPU meters ------------------------------------------------------------------


def backing_cpu() -> dict[int, float]:
    """CPU seconds of every PostgreSQL and Redis process (read-only /proc
    scan): work the gateway causes there is part of its cost per request."""
    out: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm in BACKING_SERVICES:
            out[int(entry.name)] = cpu_seconds([int(entry.name)])
    return out


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat: how much of the
    machine was in use, by us or by anyone else sharing it."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def busy_cores(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Cores of the whole machine in use between two :func:`machine_ticks`."""
    busy, total = after[0] - before[0], after[1] - before[1]
    return round(busy / max(1, total) * (os.cpu_count() or 1), 2)


def children_cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- request/response load -------------------------------------------------------


def _ready(bench: Bench, name: str, what: str) -> Target:
    """Target ``name`` started and every target idle; logs ``what`` comes next."""
    target = bench.target(name)
    bench.settle()
    log(what)
    return target


def throughput(bench: Bench, name: str) -> dict[str, Any]:
    """wrk at 64 connections after a warm-up, with the CPU it cost each
    process (server, wrk, PostgreSQL+Redis, the whole machine)."""

    def measure() -> dict[str, Any]:
        a, wrk = bench.args, bench.tools["wrk"]
        target = _ready(
            bench,
            name,
            f"throughput {name}: warm-up {a.warmup}s, then {a.duration}s at 64 connections",
        )
        run_wrk(wrk, target.url, target.script, connections=64, threads=2, seconds=a.warmup)
        pids = target.pids
        # Per process, to see how wrk's keep-alive connections landed on
        # the two workers (gunicorn does not rebalance them).
        before = {pid: cpu_seconds([pid]) for pid in pids}
        wrk_cpu, started = children_cpu_seconds(), time.monotonic()
        ticks0, backing0 = machine_ticks(), backing_cpu()
        result = run_wrk(
            wrk, target.url, target.script, connections=64, threads=2, seconds=a.duration
        )
        wall = time.monotonic() - started
        ticks1, backing1 = machine_ticks(), backing_cpu()
        out: dict[str, Any] = result.as_dict()
        per_process = [round((cpu_seconds([pid]) - before[pid]) / wall, 2) for pid in pids]
        out["cpu_cores"] = {
            "server": round(sum(per_process), 2) if pids else None,
            # master first, then the workers
            "per_process": per_process,
            "wrk": round((children_cpu_seconds() - wrk_cpu) / wall, 2),
            # Processes that exited in the window are missed (their CPU is
            # small: Django keeps its database connections open).
            "postgres_redis": round(
                sum(v - backing0.get(pid, 0.0) for pid, v in backing1.items()) / wall, 2
            ),
            "machine_busy": busy_cores(ticks0, ticks1),
        }
        if target.service is not None and name != "direct":
            out["memory_after"] = memory_of(target.service.proc.pid).as_dict()
            out["busy_after_load_s"] = bench.settle().get(name)
        log(f"  {name}: {result.rps:.0f} req/s, {result.errors} errors")
        return out

    result: dict[str, Any] = bench.memo("throughput", name, measure)
    return result


def latency_wrk(bench: Bench, name: str) -> dict[str, Any]:
    """wrk --latency at 16 connections (closed loop), after 2 s of warm-up."""

    def measure() -> dict[str, Any]:
        a, wrk = bench.args, bench.tools["wrk"]
        what = f"latency {name}: wrk --latency 16 connections, {a.latency_duration}s"
        target = _ready(bench, name, what)
        run_wrk(wrk, target.url, target.script, connections=16, threads=2, seconds=2)
        result = run_wrk(
            wrk,
            target.url,
            target.script,
            connections=16,
            threads=2,
            seconds=a.latency_duration,
            latency=True,
        )
        return result.as_dict()

    result: dict[str, Any] = bench.memo("latency_wrk", name, measure)
    return result


def openloop_argv(bench: Bench, url: str, rate: float, duration: float) -> list[str]:
    """bench/openloop.py sending the bench request at ``rate`` per second."""
    argv = [sys.executable, str(BENCH / "openloop.py"), url, "--rate", str(rate)]
    argv += ["--duration", str(duration), "--auth", bench.key]
    return argv + ["--body", json.dumps(REQUEST_BODY)]


def open_loop(bench: Bench, name: str) -> dict[str, Any]:
    """A fixed request rate (``--rate``), latency from each request's
    scheduled send time."""

    def measure() -> dict[str, Any]:
        a = bench.args
        what = f"open-loop {name}: {a.rate:.0f} req/s for {a.open_duration}s"
        target = _ready(bench, name, what)
        argv = openloop_argv(bench, target.url, a.rate, a.open_duration)
        # Issue 10 asks for added latency "at 16 connections": the fixed
        # rate goes over at most 16 of them.
        argv += ["--max-connections", "16"]
        return run_json_driver(argv, timeout=a.open_duration + 60)

    result: dict[str, Any] = bench.memo("open_loop", name, measure)
    return result


# --- streams ---------------------------------------------------------------------


class StreamUpstreamMissing(BenchError):
    """The streaming upstream did not start; the scenario is skipped."""


@contextlib.contextmanager
def stream_upstream(bench: Bench, stream_tokens: int) -> Iterator[tuple[Service, str]]:
    """Run the streaming upstream on ``bench.stream_port``; yields (service,
    chat URL). Raises :class:`StreamUpstreamMissing` (with the reason) when
    it does not start.

    ``--stream-upstream nginx`` (default): nginx with the echo module, a
    C upstream that costs the shared 2 cores almost nothing, as a remote
    provider would. ``emulator``: our Python emulator, which takes a good
    part of a core at 2,000 streams and so competes with the gateway.
    """
    a = bench.args
    url = f"http://{HOST}:{bench.stream_port}{CHAT_PATH}"
    if a.stream_upstream == "nginx":
        try:
            service, _ = start_stream_nginx(
                bench.group,
                bench.workdir,
                bench.tools["nginx"],
                stream_tokens,
                a.chunk_interval_ms,
                port=bench.stream_port,
            )
        except BenchError as exc:
            raise StreamUpstreamMissing(f"the nginx stream upstream did not start: {exc}") from exc
    else:
        # The emulator always comes from the working tree: it is test
        # equipment, not the code under test.
        if not (REPO / "providers" / "emulators" / "__main__.py").exists():
            raise StreamUpstreamMissing(
                "the streaming emulator (providers/emulators) is not there yet"
            )
        argv = [sys.executable, "-m", "providers.emulators", "openai", "--host", HOST]
        argv += ["--port", str(bench.stream_port), "--stream-tokens", str(stream_tokens)]
        argv += ["--chunk-interval-ms", str(a.chunk_interval_ms)]
        service = bench.group.start(
            "emulator", argv, env=bench.env, log_path=bench.workdir / "emulator.log"
        )
        try:
            wait_http(f"http://{HOST}:{bench.stream_port}/v1/models", service, timeout=30)
        except BenchError as exc:
            bench.group.stop(service)
            raise StreamUpstreamMissing(f"the streaming emulator did not start: {exc}") from exc
    try:
        yield service, url
    finally:
        bench.group.stop(service)


def stream_ramp(bench: Bench, stream_tokens: int) -> float:
    """Seconds over which the streams open. By default 0.8x one stream's
    length: in a steady state, N concurrent streams of T seconds arrive
    at N/T per second (Little's law); opening them a little faster than
    that makes sure all N are open at once at the peak."""
    if bench.args.ramp is not None:
        return float(bench.args.ramp)
    return round(0.8 * stream_tokens * bench.args.chunk_interval_ms / 1000, 2)


def streams(
    bench: Bench,
    url: str,
    model: str,
    count: int,
    stream_tokens: int,
    rss_pid: int = 0,
    cpu_of: dict[str, list[int]] | None = None,
) -> dict[str, Any]:
    """Run the stream driver with ``count`` streams; ``cpu_of`` names
    process groups whose CPU (in cores, over the driver's run) goes into
    the result."""
    a = bench.args
    timeout = stream_tokens * a.chunk_interval_ms / 1000 * 3 + 30
    argv = [sys.executable, str(BENCH / "streams.py"), url, "--streams", str(count)]
    argv += ["--ramp", str(stream_ramp(bench, stream_tokens)), "--auth", bench.key]
    argv += ["--timeout", str(timeout), "--model", model]
    if rss_pid:
        argv += ["--rss-pid", str(rss_pid)]
    groups = cpu_of or {}
    cpu0 = {name: cpu_seconds(pids) for name, pids in groups.items()}
    ticks0, t0 = machine_ticks(), time.monotonic()
    out = run_json_driver(argv, timeout=timeout + 60)
    elapsed = time.monotonic() - t0
    out["cpu_cores"] = {
        name: round((cpu_seconds(pids) - cpu0[name]) / elapsed, 2) for name, pids in groups.items()
    }
    out["cpu_cores"]["driver"] = out.get("driver_cpu_cores")
    out["machine_busy_cores"] = busy_cores(ticks0, machine_ticks())
    return out


def skipped_without_upstream(
    run: Callable[[Bench], dict[str, Any]],
) -> Callable[[Bench], dict[str, Any]]:
    """A streaming scenario whose upstream did not start is recorded as
    skipped, with the reason, instead of failing the whole run."""

    @functools.wraps(run)
    def guarded(bench: Bench) -> dict[str, Any]:
        try:
            return run(bench)
        except StreamUpstreamMissing as exc:
            return {"skipped": str(exc)}

    return guarded
