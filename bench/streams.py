"""Concurrent SSE stream driver.

Opens N streaming chat completions (started evenly over ``--ramp`` seconds),
reads every event and reports how many completed with ``data: [DONE]``,
time to first event (TTFT) and total stream time. Optionally samples a
process tree's RSS while the streams are open (``--rss-pid``), because
memory under many open streams is what issue 10 caps.

The driver shares the 2 cores with the gateway it measures, so it reads
with a bare :class:`asyncio.Protocol` (no StreamReader, no per-chunk
decoding): each read is scanned for complete events with ``bytes`` methods
that run in C, and uvloop drives the sockets when it is installed. The
driver's own CPU time is part of the output, so a run shows how much of
the machine the measuring took.

Usage: python bench/streams.py URL --streams 500 --auth KEY
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from typing import Any

from harness import memory_of
from httpclient import Target, build_request, percentile

DATA = b"data: "
DONE = b"data: [DONE]"
ERROR = b'data: {"error"'


class Result:
    def __init__(self) -> None:
        self.ttft_ms: list[float] = []
        self.total_ms: list[float] = []
        self.events: list[int] = []
        self.completed = 0
        self.open_now = 0
        self.open_max = 0
        self.failures: dict[str, int] = {}

    def fail(self, kind: str) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1


class StreamProtocol(asyncio.Protocol):
    """One streamed request: send it, then count SSE events as they arrive.

    Events are found by their ``\\n\\n`` terminator; HTTP chunk framing
    between events does not matter for counting ``data:`` lines, so the body
    is not de-chunked. An event split over two reads waits in the buffer.
    """

    def __init__(self, payload: bytes, done: asyncio.Future[str]) -> None:
        self.payload = payload
        self.done = done
        self.buffer = bytearray()
        self.in_body = False
        self.first: float | None = None
        self.events = 0
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses.
        self.transport = transport
        transport.write(self.payload)  # type: ignore[attr-defined]

    def _finish(self, outcome: str) -> None:
        if not self.done.done():
            self.done.set_result(outcome)
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.in_body:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status_line = bytes(buffer[: buffer.find(b"\r\n")])
            parts = status_line.split(b" ", 2)
            if len(parts) < 2 or parts[1] != b"200":
                self._finish(f"http_{parts[1].decode('latin-1') if len(parts) > 1 else '?'}")
                return
            del buffer[: end + 4]
            self.in_body = True
        end = buffer.rfind(b"\n\n")
        if end < 0:
            return
        segment = bytes(buffer[: end + 2])
        del buffer[: end + 2]
        count = segment.count(DATA)
        if not count:
            return
        if self.first is None:
            self.first = time.perf_counter()
        if ERROR in segment:
            self._finish("stream_error_event")
            return
        if DONE in segment:
            self.events += count - 1
            self._finish("done")
            return
        self.events += count

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(type(exc).__name__ if exc else "no_done")


async def one_stream(
    target: Target, payload: bytes, delay: float, timeout: float, result: Result
) -> None:
    await asyncio.sleep(delay)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[str] = loop.create_future()
    protocol = StreamProtocol(payload, done)
    opened = False
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            await loop.create_connection(lambda: protocol, target.host, target.port)
            opened = True
            result.open_now += 1
            result.open_max = max(result.open_max, result.open_now)
            outcome = await done
    except TimeoutError:
        result.fail("timeout")
        return
    except OSError as exc:
        result.fail(type(exc).__name__)
        return
    finally:
        if opened:
            result.open_now -= 1
        if protocol.transport is not None:
            protocol.transport.close()
    if outcome != "done":
        result.fail(outcome)
        return
    end = time.perf_counter()
    result.completed += 1
    result.events.append(protocol.events)
    result.ttft_ms.append(((protocol.first or end) - started) * 1000)
    result.total_ms.append((end - started) * 1000)


async def sample_rss(pid: int, stop: asyncio.Event, samples: list[dict[str, Any]]) -> None:
    while not stop.is_set():
        mem = memory_of(pid)
        samples.append({"rss_mb": mem.rss_mb, "pss_mb": mem.pss_mb})
        try:
            await asyncio.wait_for(stop.wait(), timeout=0.5)
        except TimeoutError:
            pass


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(args: argparse.Namespace) -> dict[str, Any]:
    target = Target.parse(args.url)
    body = json.dumps(
        {
            "model": args.model,
            "stream": True,
            "messages": [{"role": "user", "content": args.prompt}],
        }
    ).encode()
    payload = build_request(target, body, args.auth, accept="text/event-stream")
    result = Result()
    stop = asyncio.Event()
    rss: list[dict[str, Any]] = []
    sampler = asyncio.create_task(sample_rss(args.rss_pid, stop, rss)) if args.rss_pid else None
    started, cpu0 = time.perf_counter(), _cpu_seconds()
    tasks = [
        asyncio.create_task(
            one_stream(target, payload, args.ramp * i / max(1, args.streams), args.timeout, result)
        )
        for i in range(args.streams)
    ]
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu0
    stop.set()
    if sampler is not None:
        await sampler
    ttft = sorted(result.ttft_ms)
    total = sorted(result.total_ms)
    events = sorted(result.events)
    out: dict[str, Any] = {
        "streams": args.streams,
        "ramp_s": args.ramp,
        "completed": result.completed,
        "failures": result.failures,
        "open_max": result.open_max,
        "wall_s": round(wall, 2),
        "driver_cpu_cores": round(cpu / wall, 2) if wall else 0.0,
        "loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
        "events_per_stream": {
            "min": events[0] if events else 0,
            "max": events[-1] if events else 0,
        },
        "events_total": sum(events),
        "ttft_ms": {p: round(percentile(ttft, float(p[1:])), 2) for p in ("p50", "p90", "p99")},
        "total_ms": {p: round(percentile(total, float(p[1:])), 1) for p in ("p50", "p99")},
    }
    out["ttft_ms"]["max"] = round(ttft[-1], 2) if ttft else float("nan")
    if rss:
        out["rss_peak_mb"] = max(s["rss_mb"] for s in rss)
        out["pss_peak_mb"] = max(s["pss_mb"] for s in rss)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--ramp", type=float, default=2.0, help="seconds to start them all")
    parser.add_argument("--auth", default="bench")
    parser.add_argument("--model", default="bench/stream")
    # Long enough that the emulator can split its echo into 200 chunks.
    parser.add_argument(
        "--prompt",
        default=" ".join(f"benchmark{i:02d}" for i in range(45)),
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="per-stream timeout")
    parser.add_argument("--rss-pid", type=int, default=0, help="sample this process tree's RSS")
    args = parser.parse_args()
    if not 1 <= args.streams <= 10_000:
        parser.error("--streams must be within 1..10000")
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run(args))
    else:
        result = uvloop.run(run(args))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
