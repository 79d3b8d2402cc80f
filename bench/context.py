"""One bench run: what it started, what it measured, what it found.

:class:`Bench` does the set-up every scenario relies on (tools, PostgreSQL
and Redis, the static nginx upstream, the catalog, API keys), starts
targets on first use (``targets.py``), keeps each measurement once per run
(so ratios compare figures from the same run) and runs the scenarios it is
given. Everything it starts is in ``group`` and stopped by the caller.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import services
from harness import (
    HOST,
    ProcessGroup,
    cpu_seconds,
    ensure_tools,
    free_port,
    log,
    process_tree,
    start_nginx,
    write_wrk_script,
)
from targets import CHAT_PATH, STARTERS, Target

if TYPE_CHECKING:
    from scenarios import Scenario

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.group = ProcessGroup()
        self.tools: dict[str, str] = {}
        self.results: dict[str, Any] = {"scenarios": {}}
        self.targets: dict[str, Target] = {}
        self.measured: dict[tuple[str, str], Any] = {}
        self.key = ""
        self.env: dict[str, str] = {}
        self.stream_port = free_port()
        self.wrk_script = workdir / "post.lua"
        self.app_dir = REPO
        self.source = "working tree"

    # --- set-up -------------------------------------------------------------

    def setup(self, need_py_spy: bool) -> None:
        a = self.args
        self.tools = ensure_tools(need_py_spy=need_py_spy)
        if a.source == "head":
            self.app_dir, self.source = services.export_head(self.workdir)
            log(f"gateway code: {self.source}")
        self.results["source"] = self.source
        self.results["database"] = services.database_name(a.database_url)
        self.results["redis_db"] = services.redis_db(a.redis_url)
        services.check_services(a.database_url, a.redis_url)
        services.ensure_database(a.database_url)
        nginx, nginx_port = start_nginx(self.group, self.workdir, self.tools["nginx"])
        self.targets["direct"] = Target(
            nginx, f"http://{HOST}:{nginx_port}{CHAT_PATH}", self.wrk_script
        )
        log(f"nginx upstream on {HOST}:{nginx_port}")
        catalog = self.workdir / "catalog.yaml"
        services.write_catalog(catalog, nginx_port, self.stream_port)
        self.env = services.gateway_env(self.workdir, catalog, a.database_url, a.redis_url)
        log(f"migrating {services.database_name(a.database_url)}")
        self.manage("migrate", "--noinput")
        self.key = services.create_key(self.app_dir, self.env, "bench")
        write_wrk_script(self.wrk_script, self.key)

    def manage(self, *argv: str) -> str:
        return services.manage(self.app_dir, self.env, *argv)

    # --- targets ------------------------------------------------------------

    def target(self, name: str) -> Target:
        """The running target ``name``, started on first use."""
        if name not in self.targets:
            self.targets[name] = STARTERS[name](self)
        return self.targets[name]

    def stop_target(self, name: str) -> None:
        target = self.targets.pop(name, None)
        if target is not None and target.service is not None:
            self.group.stop(target.service)

    def settle(self, max_seconds: float = 30.0) -> dict[str, float]:
        """Wait until every running gunicorn target is idle (< 0.05 cores).

        Work a gateway defers (e.g. draining its usage stream into
        PostgreSQL) would otherwise run during the next measurement and
        steal its CPU. Returns, per target, how long it stayed busy.
        """
        busy_for: dict[str, float] = {}
        for name, target in list(self.targets.items()):
            if target.service is None or name == "direct":
                continue
            started = time.monotonic()
            while time.monotonic() - started < max_seconds:
                pids = process_tree(target.service.proc.pid)
                before = cpu_seconds(pids)
                time.sleep(0.5)
                if (cpu_seconds(pids) - before) / 0.5 < 0.05:
                    break
            busy_for[name] = round(time.monotonic() - started, 1)
            if busy_for[name] >= 1.0:
                log(f"  {name} stayed busy {busy_for[name]}s after the load stopped")
        return busy_for

    # --- measurements (each taken once per run) ------------------------------

    def memo(self, kind: str, name: str, measure: Callable[[], Any]) -> Any:
        if (kind, name) not in self.measured:
            self.measured[(kind, name)] = measure()
        return self.measured[(kind, name)]

    def forget(self, kind: str, name: str) -> None:
        """Measure ``name`` afresh next time (for back-to-back pairs)."""
        self.measured.pop((kind, name), None)

    # --- driver -------------------------------------------------------------

    def run(self, scenarios: Sequence[Scenario]) -> dict[str, Any]:
        self.results["quick"] = self.args.quick
        self.results["started"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.results["load_before"] = os.getloadavg()
        self.results["yardstick_ms"] = python_yardstick_ms()
        started = time.monotonic()
        self.setup(need_py_spy=any(s.needs_py_spy for s in scenarios))
        for scenario in scenarios:
            log(f"== scenario {scenario.name}")
            self.results["scenarios"][scenario.name] = scenario.run(self)
        self.results["load_after"] = os.getloadavg()
        self.results["elapsed_s"] = round(time.monotonic() - started, 1)
        self.results["gateway_log_tail"] = errors_in_logs(sorted(self.workdir.glob("gateway*.log")))
        return self.results


def python_yardstick_ms() -> float:
    """Best of 5 timings of ``sum(range(10**6))`` in this interpreter: how
    fast this machine runs Python today, so runs on different machine types
    (these sessions do not always get the same CPU) can be put side by side."""
    import timeit

    return round(min(timeit.repeat("sum(range(1_000_000))", number=1, repeat=5)) * 1000, 1)


def errors_in_logs(paths: list[Path], limit: int = 15) -> list[str]:
    """Distinct non-INFO lines of the gateway logs, with how often each came:
    anything that went wrong, without a flood of one repeated warning."""
    counts: dict[str, int] = {}
    for path in paths:
        try:
            with open(path, errors="replace") as fh:
                for line in fh:
                    if '"level":"INFO"' in line.replace(" ", "") or "[INFO]" in line:
                        continue
                    key = line.strip()
                    try:
                        record = json.loads(key)
                        key = f"{record.get('level')} {record.get('logger')}: {record.get('msg')}"
                    except ValueError:
                        pass
                    if key:
                        counts[key[:300]] = counts.get(key[:300], 0) + 1
        except OSError:
            continue
    return [f"{n}× {line}" for line, n in list(counts.items())[:limit]]
