"""How many concurrent streams can one emulator process hold?

Opens ``--streams`` (default 2000) simultaneous streaming chat requests with
gevent against an emulator on the loopback interface, waits for all of them
and reports how many completed (status 200 and a final ``data: [DONE]``),
latency percentiles, the emulator's peak open streams and its memory.

    python bench/emulator_capacity.py                    # spawns an emulator
    python bench/emulator_capacity.py --url http://127.0.0.1:8801

With ``--url`` the running emulator is reset (knobs back to start values,
stats zeroed) and its stream knobs are set from the flags.  The load is
bounded: loopback only, at most 20,000 streams, and a hard deadline.
Exit status is 0 only if every stream completed.
"""

from __future__ import annotations

# Cooperative sockets for thousands of client connections in one process;
# patch before anything imports socket.
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import gevent  # noqa: E402
import orjson  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from providers.emulators.base import raise_nofile_limit  # noqa: E402
from providers.emulators.testing import (  # noqa: E402
    EmulatorControl,
    RunningEmulator,
    start_emulator,
)

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost"})
MAX_STREAMS = 20_000


@dataclass
class Outcome:
    """Result of one streaming request."""

    ok: bool
    reason: str
    ttfb_s: float | None
    total_s: float


def one_stream(host: str, port: int, request: bytes, read_timeout: float) -> Outcome:
    """Send one streaming request and read the response to the end."""
    started = time.monotonic()
    ttfb: float | None = None
    buf = bytearray()
    try:
        # A numeric address and a bare connect: create_connection() would push
        # every one of thousands of connects through the resolver thread pool.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(read_timeout)
            sock.connect((host, port))
            sock.sendall(request)
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                if ttfb is None:
                    ttfb = time.monotonic() - started
                buf += data
    except TimeoutError:
        return Outcome(False, "timeout", ttfb, time.monotonic() - started)
    except OSError as exc:
        return Outcome(False, type(exc).__name__, ttfb, time.monotonic() - started)
    total = time.monotonic() - started
    status = bytes(buf[:12])
    if not status.startswith(b"HTTP/1.1 200"):
        return Outcome(False, "status " + status.decode("latin-1", "replace"), ttfb, total)
    # Connection: close, so EOF ends the body; a complete chunked body ends
    # with the zero-length chunk right after the [DONE] frame.
    if b"data: [DONE]" not in buf or not buf.endswith(b"0\r\n\r\n"):
        return Outcome(False, "truncated", ttfb, total)
    return Outcome(True, "ok", ttfb, total)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (0 for an empty list)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a report; 0 if every stream completed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", help="running emulator (http://127.0.0.1:PORT); default: spawn one"
    )
    parser.add_argument("--kind", default="openai", help="kind to spawn (default openai)")
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--stream-tokens", type=int, default=20)
    parser.add_argument("--chunk-interval-ms", type=int, default=50)
    parser.add_argument("--ramp-s", type=float, default=0.0, help="spread the starts over this")
    parser.add_argument("--read-timeout", type=float, default=30.0)
    parser.add_argument("--deadline-s", type=float, default=120.0, help="hard stop for the run")
    args = parser.parse_args(argv)

    if not 1 <= args.streams <= MAX_STREAMS:
        parser.error(f"--streams must be within 1..{MAX_STREAMS}")
    soft, _hard = raise_nofile_limit()
    if soft != -1 and soft < args.streams + 100:
        parser.error(f"RLIMIT_NOFILE {soft} is too low for {args.streams} streams")

    spawned: RunningEmulator | None = None
    if args.url:
        base_url = args.url.rstrip("/")
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname not in LOOPBACK_HOSTS:
            parser.error("only http://127.0.0.1 emulators may be loaded by this script")
        control = EmulatorControl(base_url)
        control.reset()
        control.set_config(
            stream_tokens=args.stream_tokens, chunk_interval_ms=args.chunk_interval_ms
        )
    else:
        spawned = start_emulator(
            args.kind,
            stream_tokens=args.stream_tokens,
            chunk_interval_ms=args.chunk_interval_ms,
        )
        base_url = spawned.base_url
        control = spawned.control

    parts = urlsplit(base_url)
    host, port = socket.gethostbyname(parts.hostname or "127.0.0.1"), parts.port or 80
    body = orjson.dumps(
        {
            "model": "gpt-mock",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [
                {"role": "user", "content": "please stream a reply that is long enough to split"}
            ],
        }
    )
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\n"
        + f"Host: {host}:{port}\r\n".encode()
        + b"Authorization: Bearer bench\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n".encode()
        + b"Connection: close\r\n\r\n"
        + body
    )

    peak = {"open_streams": 0, "rss_kb": 0}

    def watch() -> None:
        # Sample the emulator while the load runs; its own peak gauge covers
        # the gaps between samples.
        while True:
            try:
                stats = control.stats()
            except (OSError, ValueError):
                stats = {}
            peak["open_streams"] = max(peak["open_streams"], stats.get("open_streams") or 0)
            peak["rss_kb"] = max(peak["rss_kb"], stats.get("rss_kb") or 0)
            gevent.sleep(0.25)

    watcher = gevent.spawn(watch)
    started = time.monotonic()
    greenlets = []
    for index in range(args.streams):
        greenlets.append(gevent.spawn(one_stream, host, port, request, args.read_timeout))
        if args.ramp_s and index % 100 == 99:
            gevent.sleep(args.ramp_s * 100 / args.streams)
    gevent.joinall(greenlets, timeout=args.deadline_s)
    wall = time.monotonic() - started
    watcher.kill()

    outcomes = [g.value for g in greenlets if g.successful() and g.value is not None]
    unfinished = len(greenlets) - len(outcomes)
    gevent.killall([g for g in greenlets if not g.dead], block=False)
    completed = [o for o in outcomes if o.ok]
    failures = Counter(o.reason for o in outcomes if not o.ok)
    if unfinished:
        failures["unfinished at deadline"] = unfinished
    stats = control.stats()
    if spawned is not None:
        spawned.stop()

    durations = [o.total_s for o in completed]
    ttfbs = [o.ttfb_s for o in completed if o.ttfb_s is not None]
    report = {
        "streams": args.streams,
        "completed": len(completed),
        "failed": dict(failures),
        "wall_s": round(wall, 2),
        "stream_s_p50": round(percentile(durations, 50), 3),
        "stream_s_p95": round(percentile(durations, 95), 3),
        "stream_s_max": round(max(durations, default=0.0), 3),
        "ttfb_s_p50": round(percentile(ttfbs, 50), 3),
        "ttfb_s_p95": round(percentile(ttfbs, 95), 3),
        "emulator_streams_completed": stats.get("streams_completed"),
        "emulator_peak_open_streams": max(
            peak["open_streams"], stats.get("peak_open_streams") or 0
        ),
        "emulator_rss_kb_peak_sampled": peak["rss_kb"],
        "emulator_rss_kb_end": stats.get("rss_kb"),
        "emulator_max_rss_kb": stats.get("max_rss_kb"),
    }
    width = max(len(k) for k in report)
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")
    return 0 if len(completed) == args.streams else 1


if __name__ == "__main__":
    sys.exit(main())
