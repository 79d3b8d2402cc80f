"""Concurrent SSE stream driver.

Opens N streaming chat completions (started evenly over ``--ramp`` seconds
so the connect burst does not dominate), reads every event and reports
how many completed with ``data: [DONE]``, time to first event (TTFT) and
total stream time. Optionally samples a process tree's RSS while the
streams are open (``--rss-pid``), because memory under many open streams is
what issue 10 caps.

Usage: python bench/streams.py URL --streams 500 --auth KEY
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from harness import memory_of
from httpclient import Target, build_request, iter_body, read_head


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


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


async def one_stream(
    target: Target, payload: bytes, delay: float, timeout: float, result: Result
) -> None:
    await asyncio.sleep(delay)
    writer = None
    try:
        async with asyncio.timeout(timeout):
            started = time.perf_counter()
            reader, writer = await asyncio.open_connection(target.host, target.port)
            result.open_now += 1
            result.open_max = max(result.open_max, result.open_now)
            writer.write(payload)
            head = await read_head(reader)
            if head.status != 200:
                result.fail(f"http_{head.status}")
                return
            buffer = b""
            events = 0
            first: float | None = None
            done = False
            async for piece in iter_body(reader, head):
                buffer += piece
                while b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    if not event.startswith(b"data: "):
                        continue
                    if first is None:
                        first = time.perf_counter()
                    if event == b"data: [DONE]":
                        done = True
                    elif event.startswith(b'data: {"error"'):
                        result.fail("stream_error_event")
                    else:
                        events += 1
                if done:
                    break
            if not done:
                result.fail("no_done")
                return
            end = time.perf_counter()
            result.completed += 1
            result.events.append(events)
            result.ttft_ms.append(((first or end) - started) * 1000)
            result.total_ms.append((end - started) * 1000)
    except TimeoutError:
        result.fail("timeout")
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        result.fail(type(exc).__name__)
    finally:
        if writer is not None:
            result.open_now -= 1
            writer.close()


async def sample_rss(pid: int, stop: asyncio.Event, samples: list[dict[str, Any]]) -> None:
    while not stop.is_set():
        mem = memory_of(pid)
        samples.append({"rss_mb": mem.rss_mb, "pss_mb": mem.pss_mb})
        try:
            await asyncio.wait_for(stop.wait(), timeout=0.5)
        except TimeoutError:
            pass


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
    started = time.perf_counter()
    tasks = [
        asyncio.create_task(
            one_stream(target, payload, args.ramp * i / max(1, args.streams), args.timeout, result)
        )
        for i in range(args.streams)
    ]
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - started
    stop.set()
    if sampler is not None:
        await sampler
    ttft = sorted(result.ttft_ms)
    total = sorted(result.total_ms)
    events = sorted(result.events)
    out: dict[str, Any] = {
        "streams": args.streams,
        "completed": result.completed,
        "failures": result.failures,
        "open_max": result.open_max,
        "wall_s": round(wall, 2),
        "events_per_stream": {
            "min": events[0] if events else 0,
            "max": events[-1] if events else 0,
        },
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
    json.dump(asyncio.run(run(args)), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
