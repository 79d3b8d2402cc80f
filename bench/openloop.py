"""Open-loop (fixed-rate) latency driver.

wrk is closed-loop: when the server slows down, wrk sends less, and the
slowness hides in fewer samples ("coordinated omission"). Here request i
is due at ``t0 + i / rate`` whatever happened before, and its latency is
measured from that due time, so any queueing (in the server or in this
driver) shows up in the percentiles.

Usage: python bench/openloop.py URL --rate 300 --duration 20 --auth KEY
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from httpclient import Target, build_request, percentile, read_body, read_head


class Driver:
    def __init__(self, target: Target, payload: bytes, max_connections: int, timeout: float):
        self.target = target
        self.payload = payload
        self.max_connections = max_connections
        self.timeout = timeout
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.open_connections = 0
        self.slot = asyncio.Condition()
        self.latencies: list[float] = []
        self.statuses: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.send_lag: list[float] = []  # how late the driver itself was at sending
        self.stale_dropped = 0  # idle connections the server had closed

    async def _acquire(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with self.slot:
            while not self.idle and self.open_connections >= self.max_connections:
                await self.slot.wait()
            while self.idle:
                reader, writer = self.idle.pop()
                # The server may close a keep-alive connection that sat idle
                # (gunicorn: after `keepalive` seconds). Like urllib3's
                # is_connection_dropped check, do not send on one it closed.
                if reader.at_eof() or writer.is_closing():
                    writer.close()
                    self.open_connections -= 1
                    self.stale_dropped += 1
                    continue
                return reader, writer
            self.open_connections += 1
        try:
            return await asyncio.open_connection(self.target.host, self.target.port)
        except BaseException:
            async with self.slot:
                self.open_connections -= 1
                self.slot.notify()
            raise

    async def _release(
        self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None, reuse: bool
    ) -> None:
        async with self.slot:
            if conn is not None and reuse:
                self.idle.append(conn)
            else:
                self.open_connections -= 1
                if conn is not None:
                    conn[1].close()
            self.slot.notify()

    async def one(self, due: float) -> None:
        conn = None
        reuse = False
        try:
            async with asyncio.timeout(self.timeout):
                conn = await self._acquire()
                reader, writer = conn
                self.send_lag.append(time.perf_counter() - due)
                writer.write(self.payload)
                head = await read_head(reader)
                await read_body(reader, head)
            elapsed = time.perf_counter() - due
            reuse = head.keep_alive
            self.latencies.append(elapsed * 1000)
            key = str(head.status)
            self.statuses[key] = self.statuses.get(key, 0) + 1
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            name = type(exc).__name__
            self.errors[name] = self.errors.get(name, 0) + 1
        finally:
            await self._release(conn, reuse)

    async def run(self, rate: float, duration: float) -> dict[str, Any]:
        total = int(rate * duration)
        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter() + 0.05
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self.one(due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        sent_for = time.perf_counter() - start
        if tasks:
            await asyncio.wait(tasks, timeout=self.timeout + 5)
        wall = time.perf_counter() - start
        for _reader, writer in self.idle:
            writer.close()
        lat = sorted(self.latencies)
        lag = sorted(self.send_lag)
        ok = sum(n for s, n in self.statuses.items() if s.startswith("2"))
        return {
            "rate": rate,
            "duration_s": duration,
            "max_connections": self.max_connections,
            "stale_connections_dropped": self.stale_dropped,
            "scheduled": total,
            "completed": len(lat),
            "ok_2xx": ok,
            "non_2xx": len(lat) - ok,
            "errors": sum(self.errors.values()),
            "error_kinds": self.errors,
            "statuses": self.statuses,
            "achieved_rps": round(len(lat) / wall, 1) if wall > 0 else 0.0,
            "send_window_s": round(sent_for, 2),
            "connections_opened_max": self.max_connections,
            "latency_ms": {
                "p50": round(percentile(lat, 50), 3),
                "p90": round(percentile(lat, 90), 3),
                "p99": round(percentile(lat, 99), 3),
                "p99.9": round(percentile(lat, 99.9), 3),
                "max": round(lat[-1], 3) if lat else float("nan"),
            },
            "driver_send_lag_ms": {
                "p50": round(percentile(lag, 50) * 1000, 3),
                "p99": round(percentile(lag, 99) * 1000, 3),
            },
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, default=300.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of sending")
    parser.add_argument("--auth", default="bench", help="bearer key")
    parser.add_argument("--body", default='{"model":"bench/mock","messages":[]}')
    parser.add_argument("--max-connections", type=int, default=256)
    parser.add_argument("--timeout", type=float, default=10.0, help="per-request timeout")
    args = parser.parse_args()
    if args.rate <= 0 or args.duration <= 0 or args.rate * args.duration > 1_000_000:
        parser.error("rate and duration must be positive and bounded (<= 1e6 requests)")
    target = Target.parse(args.url)
    payload = build_request(target, args.body.encode(), args.auth)
    driver = Driver(target, payload, args.max_connections, args.timeout)
    result = asyncio.run(driver.run(args.rate, args.duration))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
