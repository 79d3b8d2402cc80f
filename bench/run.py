"""XRouter benchmark v1: ``python bench/run.py [scenario ...]``.

Scenarios (default: all, in this order): throughput, latency, baseline,
features, memory, stream, workers (gevent vs gthread), profile, litellm
(LiteLLM's proxy side by side), soak (10 minutes); one module each in
``bench/scenarios/``. Each can run alone; measurements one scenario needs
from another (e.g. the gateway's req/s for the gateway/bare ratio) are
taken once per run and shared, so ratios always compare figures from the
same run on the same (noisy, shared) machine. ``--quick`` shrinks every
duration and count to a smoke of the harness (about two minutes of load
for all scenarios): it proves the scenarios run, it measures nothing.

Set-up, every run: a static nginx upstream, a PostgreSQL database
(``xr_bench`` unless ``--database-url``; created and migrated), Redis db 11
(unless ``--redis-url``), a catalog pointing at nginx (and at the streaming
upstream), a fresh API key, and the gateway under real gunicorn with
``deploy/gunicorn.conf.py``. Everything started is stopped at the end, also
on Ctrl-C. Load goes to 127.0.0.1 only and every load loop is bounded in
time.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"


def _ensure_venv() -> None:
    """``make bench`` may call us with any python: the gateway, bare proxy and
    drivers must run with the project's venv, so re-exec into it."""
    try:
        import django  # noqa: F401
        import gunicorn  # noqa: F401
    except ImportError:
        # sys.prefix, not the executable's path: the venv's python is a symlink.
        if (
            VENV_PYTHON.exists()
            and Path(sys.prefix).resolve() != VENV_PYTHON.parent.parent.resolve()
        ):
            os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])  # noqa: S606 - our venv
        raise SystemExit(
            "bench: run with the project venv (.venv/bin/python bench/run.py)"
        ) from None


_ensure_venv()

import argparse  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import tempfile  # noqa: E402
from typing import Any  # noqa: E402

import services  # noqa: E402
from context import BENCH, Bench  # noqa: E402
from harness import BenchError, raise_fd_limit  # noqa: E402
from report import write_results  # noqa: E402
from scenarios import Scenario, by_name, registry  # noqa: E402

# --quick values of the options every scenario shares (the scenarios'
# own options carry theirs): seconds, not minutes, of load on loopback.
QUICK = {
    "duration": 3.0,
    "warmup": 1.0,
    "latency_duration": 3.0,
    "rate": 100.0,
    "open_duration": 3.0,
}


class Interrupted(Exception):
    """SIGTERM: unwind through the finally blocks like Ctrl-C does."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Interrupted()


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the option help; the scenario list keeps its lines."""


def build_parser(scenarios: tuple[Scenario, ...]) -> argparse.ArgumentParser:
    names = ", ".join(s.name for s in scenarios)
    parser = argparse.ArgumentParser(
        prog="python bench/run.py",
        description=__doc__.splitlines()[0],
        epilog="scenarios (bench/scenarios/<name>.py):\n"
        + "\n".join(f"  {s.name:<11} {s.summary}" for s in scenarios),
        formatter_class=_HelpFormatter,
    )
    # No argparse choices: with nargs="*" they reject the empty default.
    parser.add_argument(
        "scenarios", nargs="*", metavar="scenario", help=f"any of {names} (default: all)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke of the harness: every duration and count cut to seconds "
        "(options given explicitly still win); the figures mean nothing",
    )
    parser.add_argument(
        "--duration", type=float, default=20.0, help="seconds of each throughput measurement"
    )
    parser.add_argument("--warmup", type=float, default=5.0, help="throughput warm-up seconds")
    parser.add_argument(
        "--latency-duration",
        type=float,
        default=10.0,
        help="seconds of each wrk --latency run at 16 connections",
    )
    parser.add_argument("--rate", type=float, default=300.0, help="open-loop requests/s")
    parser.add_argument(
        "--open-duration", type=float, default=15.0, help="seconds of each open-loop run"
    )
    parser.add_argument("--chunk-interval-ms", type=int, default=50)
    parser.add_argument(
        "--ramp",
        type=float,
        default=None,
        help="seconds to open all streams (default: 0.8x one stream's length, see stream_ramp)",
    )
    parser.add_argument(
        "--stream-upstream",
        choices=("nginx", "emulator"),
        default="nginx",
        help="streaming upstream: nginx + echo module (C) or the Python emulator",
    )
    parser.add_argument(
        "--source",
        choices=("tree", "head"),
        default="tree",
        help="gateway code to run: the working tree, or a clean export of git HEAD",
    )
    parser.add_argument(
        "--database-url",
        default=services.DEFAULT_DATABASE_URL,
        help="PostgreSQL on 127.0.0.1 for the gateway (the database is created if missing)",
    )
    parser.add_argument(
        "--redis-url", default=services.DEFAULT_REDIS_URL, help="Redis on 127.0.0.1 (and db)"
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=BENCH / "RESULTS.md",
        help="where to write the report ('-' for nowhere)",
    )
    parser.add_argument(
        "--raw",
        type=Path,
        default=None,
        help="where to write the raw figures (default: bench/results.json with the report)",
    )
    for scenario in scenarios:
        if scenario.add_options is not None:
            scenario.add_options(parser.add_argument_group(f"{scenario.name} scenario"))
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    scenarios = registry()
    parser = build_parser(scenarios)
    args = parser.parse_args(argv)
    if args.quick:
        # As defaults, so that an option given on the command line wins.
        quick = dict(QUICK)
        for scenario in scenarios:
            quick.update(scenario.quick)
        parser.set_defaults(**quick)
        args = parser.parse_args(argv)
    known = by_name()
    unknown = [s for s in args.scenarios if s not in known]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    args.scenarios = list(dict.fromkeys(args.scenarios)) or list(known)
    if args.duration > 120 or args.open_duration > 120:
        parser.error("durations are capped at 120 s")
    for scenario in scenarios:
        problem = scenario.check(args) if scenario.check is not None else None
        if problem:
            parser.error(problem)
    try:
        services.loopback_url(args.database_url, "postgres")
        services.loopback_url(args.redis_url, "redis")
        services.database_name(args.database_url)
        services.redis_db(args.redis_url)
    except BenchError as exc:
        parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    signal.signal(signal.SIGTERM, _on_sigterm)
    # A shell without job control starts background commands with SIGINT
    # ignored; make Ctrl-C / SIGINT always unwind through the clean-up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    command = "python bench/run.py" + "".join(f" {a}" for a in (argv or sys.argv[1:]))
    chosen = [by_name()[name] for name in args.scenarios]
    with tempfile.TemporaryDirectory(prefix="xrbench-") as tmp:
        bench = Bench(args, Path(tmp))
        try:
            results = bench.run(chosen)
        except BenchError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 2
        except (KeyboardInterrupt, Interrupted):
            print("bench: interrupted; stopping everything", file=sys.stderr)
            return 130
        finally:
            bench.group.stop_all()
    results["command"] = command
    report_path = None if str(args.results) == "-" else args.results
    summary = write_results(results, report_path)
    raw_path = args.raw or (BENCH / "results.json" if report_path is not None else None)
    if raw_path is not None:
        # The raw figures of the run the report shows (re-render with report.py).
        raw_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
