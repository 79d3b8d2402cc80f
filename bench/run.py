"""XRouter benchmark v1: ``python bench/run.py [scenario ...]``.

Scenarios (default: all, in this order): throughput, latency, baseline,
features, memory, stream, workers (gevent vs gthread), profile, litellm
(LiteLLM's proxy side by side), soak (10 minutes). Each can run alone;
measurements one scenario
needs from another (e.g. the gateway's req/s for the gateway/bare ratio)
are taken once per run and shared, so ratios always compare figures from
the same run on the same (noisy, shared) machine.

Set-up, every run: a static nginx upstream, PostgreSQL database
``xr_bench`` (created and migrated), Redis db 11, a catalog pointing at
nginx (and at the streaming upstream), a fresh API key, and the gateway
under real gunicorn with ``deploy/gunicorn.conf.py``. Everything started is
stopped at the end, also on Ctrl-C. Load goes to 127.0.0.1 only and every
load loop is bounded in time.
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
import contextlib  # noqa: E402
import json  # noqa: E402
import secrets  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402

from harness import (  # noqa: E402
    HOST,
    REQUEST_BODY,
    BenchError,
    ProcessGroup,
    Service,
    WrkResult,
    cpu_seconds,
    ensure_tools,
    free_port,
    gunicorn_workers,
    log,
    memory_of,
    post_json,
    process_tree,
    raise_fd_limit,
    run_json_driver,
    run_wrk,
    start_nginx,
    start_stream_nginx,
    tail,
    wait_http,
    write_wrk_script,
)
from report import write_results  # noqa: E402

BENCH = REPO / "bench"
SCENARIOS = (
    "throughput",
    "latency",
    "baseline",
    "features",
    "memory",
    "stream",
    "workers",
    "profile",
    "litellm",
    "soak",
)
CHAT_PATH = "/v1/chat/completions"
DB_NAME = "xr_bench"
DATABASE_URL = f"postgres://postgres@{HOST}:5432/{DB_NAME}"
REDIS_URL = f"redis://{HOST}:6379/11"
UPSTREAM_KEY_ENV = "BENCH_UPSTREAM_API_KEY"


class Interrupted(Exception):
    """SIGTERM: unwind through the finally blocks like Ctrl-C does."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Interrupted()


BACKING_SERVICES = ("postgres", "redis-server")


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


def python_yardstick_ms() -> float:
    """Best of 5 timings of ``sum(range(10**6))`` in this interpreter: how
    fast this machine runs Python today, so runs on different machine types
    (these sessions do not always get the same CPU) can be put side by side."""
    import timeit

    return round(min(timeit.repeat("sum(range(1_000_000))", number=1, repeat=5)) * 1000, 1)


def children_cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.group = ProcessGroup()
        self.tools: dict[str, str] = {}
        self.results: dict[str, Any] = {"scenarios": {}}
        self.targets: dict[str, tuple[Service | None, str]] = {}  # name -> (service, url)
        self.measured: dict[tuple[str, str], Any] = {}
        self.key = ""
        self.env: dict[str, str] = {}
        self.stream_port = free_port()
        self.wrk_script = workdir / "post.lua"
        self.app_dir = REPO
        self.stream_upstream_problem = ""
        self.source = "working tree"

    def _export_head(self) -> None:
        """Run the gateway from a clean export of HEAD (git archive: read-only
        for the repository), so a tree other engineers are editing mid-change
        does not decide what gets measured."""
        target = self.workdir / "app"
        target.mkdir()
        archive = subprocess.run(
            ["git", "archive", "--format=tar", "HEAD"], cwd=REPO, capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        self.app_dir = target
        self.source = f"clean export of HEAD ({commit})"
        log(f"gateway code: {self.source}")

    # --- set-up -------------------------------------------------------------

    def _check_services(self) -> None:
        ready = (
            subprocess.run(
                ["pg_isready", "-h", HOST, "-p", "5432"], capture_output=True, check=False
            )
            if _which("pg_isready")
            else None
        )
        if ready is not None and ready.returncode != 0:
            raise BenchError(
                f"PostgreSQL is not accepting connections on {HOST}:5432 "
                "(start it, e.g. `service postgresql start`)"
            )
        try:
            with socket.create_connection((HOST, 6379), timeout=2) as sock:
                sock.sendall(b"PING\r\n")
                if not sock.recv(64).startswith(b"+PONG"):
                    raise OSError("no PONG")
        except OSError as exc:
            raise BenchError(
                f"Redis is not answering on {HOST}:6379 ({exc}); "
                "start it, e.g. `service redis-server start`"
            ) from None

    def _ensure_database(self) -> None:
        psql = ["psql", "-h", HOST, "-U", "postgres", "-d", "postgres", "-Atc"]
        found = subprocess.run(
            # DB_NAME is a constant of this file, not input.
            [*psql, f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'"],  # noqa: S608
            capture_output=True,
            text=True,
            check=False,
        )
        if found.returncode != 0:
            raise BenchError(f"psql cannot reach PostgreSQL as postgres: {found.stderr.strip()}")
        if found.stdout.strip() != "1":
            log(f"creating database {DB_NAME}")
            subprocess.run(["createdb", "-h", HOST, "-U", "postgres", DB_NAME], check=True)

    def _manage(self, *argv: str) -> str:
        result = subprocess.run(
            [sys.executable, str(self.app_dir / "manage.py"), *argv],
            env=self.env,
            cwd=self.app_dir,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if result.returncode != 0:
            raise BenchError(f"manage.py {' '.join(argv)} failed:\n{result.stderr[-2000:]}")
        return result.stdout

    def setup(self) -> None:
        self.tools = ensure_tools(need_py_spy="profile" in self.args.scenarios)
        if self.args.source == "head":
            self._export_head()
        self.results["source"] = self.source
        self._check_services()
        self._ensure_database()
        nginx, nginx_port = start_nginx(self.group, self.workdir, self.tools["nginx"])
        self.targets["direct"] = (nginx, f"http://{HOST}:{nginx_port}{CHAT_PATH}")
        log(f"nginx upstream on {HOST}:{nginx_port}")
        catalog = self.workdir / "catalog.yaml"
        catalog.write_text(
            "# generated by bench/run.py\n"
            "providers:\n"
            "  - name: bench\n"
            "    kind: openai\n"
            f"    base_url: http://{HOST}:{nginx_port}/v1\n"
            f"    api_key_env: {UPSTREAM_KEY_ENV}\n"
            "  - name: benchemu\n"
            "    kind: openai\n"
            f"    base_url: http://{HOST}:{self.stream_port}/v1\n"
            f"    api_key_env: {UPSTREAM_KEY_ENV}\n"
            "models:\n"
            "  - id: bench/mock\n"
            "    provider: bench\n"
            "    upstream: gpt-mock\n"
            "  - id: bench/stream\n"
            "    provider: benchemu\n"
            "    upstream: gpt-mock\n"
        )
        # WhiteNoise warns at start-up when STATIC_ROOT is missing.
        (self.workdir / "var" / "static").mkdir(parents=True, exist_ok=True)
        (self.workdir / "prometheus").mkdir()
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "xrouter_site.settings",
            "DATABASE_URL": DATABASE_URL,
            "REDIS_URL": REDIS_URL,
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DEBUG": "false",
            # The bench upstreams (nginx, emulators) listen on loopback.
            "XROUTER_OUTBOUND_ALLOW_LOOPBACK": "true",
            # Every bench client is 127.0.0.1: no per-address connection cap.
            "XROUTER_MAX_CONNECTIONS_PER_IP": "0",
            "SECURE_SSL_REDIRECT": "false",
            "XROUTER_CATALOG": str(catalog),
            "XROUTER_VAR_DIR": str(self.workdir / "var"),
            UPSTREAM_KEY_ENV: "bench-upstream-key",
            "WEB_CONCURRENCY": "2",
            "XROUTER_ACCESS_LOG": "true",
            # The repo's gunicorn config otherwise makes a new /tmp dir for
            # Prometheus samples at every start and never removes it.
            "PROMETHEUS_MULTIPROC_DIR": str(self.workdir / "prometheus"),
        }
        for name in ("CELERY_BROKER_URL", "XROUTER_WORKER_CONNECTIONS"):
            self.env.pop(name, None)
        log("migrating xr_bench")
        self._manage("migrate", "--noinput")
        self.key = self._manage("createapikey", "--team", "bench", "--name", "bench").strip()
        if not self.key:
            raise BenchError("createapikey printed no key")
        write_wrk_script(self.wrk_script, self.key)
        # A key with every rate limit set (far above what wrk can send), so
        # the limiter's script runs on each request and settles after it.
        self.limited_key = self._manage(
            "createapikey",
            "--team",
            "bench",
            "--name",
            "bench-limited",
            "--rpm",
            "100000000",
            "--tpm",
            "2000000000",
            "--concurrency",
            "100000",
        ).strip()
        self.limited_wrk_script = self.wrk_script.with_name("limited.lua")
        write_wrk_script(self.limited_wrk_script, self.limited_key)

    def _start_gunicorn(
        self,
        name: str,
        app: str,
        env: dict[str, str],
        extra: list[str] | None = None,
        config: Path | None = None,
    ) -> tuple[Service, str]:
        port = free_port()
        env = {**env, "XROUTER_BIND": f"{HOST}:{port}"}
        config = config or self.app_dir / "deploy" / "gunicorn.conf.py"
        argv = [sys.executable, "-m", "gunicorn", "-c", str(config), *(extra or []), app]
        # Access lines go to a file, as a container runtime would collect them.
        service = self.group.start(
            name,
            argv,
            env=env,
            log_path=self.workdir / f"{name}-{port}.log",
            # SIGTERM: gunicorn's graceful stop, as in production; ProcessGroup
            # kills the group if it takes longer than its timeout.
            stop_signal=signal.SIGTERM,
        )
        probe = (
            f"http://{HOST}:{port}/healthz"
            if app.startswith("xrouter")
            else f"http://{HOST}:{port}/"
        )
        wait_http(probe, service, timeout=90)
        deadline = time.monotonic() + 30
        while len(gunicorn_workers(service.proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        url = f"http://{HOST}:{port}{CHAT_PATH}"
        # One real request per worker slot: proves the path works end to end
        # and warms key/route caches before anything is measured.
        for _ in range(4):
            status, body = post_json(url, REQUEST_BODY, self.key)
            if status != 200 or b"chat.completion" not in body:
                raise BenchError(
                    f"{name}: sanity request got {status}: {body[:300]!r}\n{tail(service.log_path)}"
                )
        log(f"{name} ready on {HOST}:{port} (pid {service.proc.pid})")
        return service, url

    def target(self, name: str) -> tuple[Service | None, str]:
        """Start a target on first use."""
        if name not in self.targets:
            if name == "gateway":
                self.targets[name] = self._start_gunicorn(
                    name, "xrouter_site.wsgi:application", self.env
                )
                service = self.targets[name][0]
                assert service is not None
                # First start only: a restart (after the access-log variant)
                # must not replace the idle figure of the first instance.
                self.results.setdefault("memory_idle", memory_of(service.proc.pid).as_dict())
            elif name == "gateway_nolog":
                env = {**self.env, "XROUTER_ACCESS_LOG": "false"}
                self.targets[name] = self._start_gunicorn(
                    name, "xrouter_site.wsgi:application", env
                )
            elif name == "gateway_limits":
                # The production gateway; only the key (with limits) differs.
                self.targets[name] = self._start_gunicorn(
                    name, "xrouter_site.wsgi:application", self.env
                )
            elif name == "gateway_lean":
                env = {
                    **self.env,
                    "XROUTER_USAGE_RECORDS_ENABLED": "false",
                    "XROUTER_METRICS_ENABLED": "false",
                }
                self.targets[name] = self._start_gunicorn(
                    name, "xrouter_site.wsgi:application", env
                )
            elif name == "gateway_gthread":
                # The same gateway under gunicorn's threaded worker (the
                # command line overrides the config file's worker class).
                threads = str(self.args.gthread_threads)
                self.targets[name] = self._start_gunicorn(
                    name,
                    "xrouter_site.wsgi:application",
                    self.env,
                    ["--worker-class", "gthread", "--threads", threads],
                )
            elif name == "litellm":
                from litellm_target import start_litellm

                master_key = "sk-bench-" + secrets.token_hex(16)
                write_wrk_script(self.wrk_script.with_name("litellm.lua"), master_key)
                nginx_url = self.targets["direct"][1]
                self.targets[name] = start_litellm(
                    self.group,
                    self.workdir,
                    nginx_url.removesuffix(CHAT_PATH) + "/v1",
                    master_key,
                    free_port(),
                )
            elif name == "bare":
                env = {**self.env, "BENCH_UPSTREAM_URL": self.targets["direct"][1]}
                env.pop("XROUTER_CATALOG")  # the gunicorn hook would load it for nothing
                service, url = self._start_gunicorn(
                    name,
                    "bare_proxy:application",
                    env,
                    ["--pythonpath", str(BENCH)],
                    config=BENCH / "bare_gunicorn.conf.py",
                )
                self.targets[name] = (service, url)
                self.results["memory_idle_bare"] = memory_of(service.proc.pid).as_dict()
            else:
                raise KeyError(name)
        return self.targets[name]

    def settle(self, max_seconds: float = 30.0) -> dict[str, float]:
        """Wait until every running gunicorn target is idle (< 0.05 cores).

        Work a gateway defers (e.g. draining its usage stream into
        PostgreSQL) would otherwise run during the next measurement and
        steal its CPU. Returns, per target, how long it stayed busy.
        """
        busy_for: dict[str, float] = {}
        for name, (service, _) in list(self.targets.items()):
            if service is None or name == "direct":
                continue
            started = time.monotonic()
            while time.monotonic() - started < max_seconds:
                pids = process_tree(service.proc.pid)
                before = cpu_seconds(pids)
                time.sleep(0.5)
                if (cpu_seconds(pids) - before) / 0.5 < 0.05:
                    break
            busy_for[name] = round(time.monotonic() - started, 1)
            if busy_for[name] >= 1.0:
                log(f"  {name} stayed busy {busy_for[name]}s after the load stopped")
        return busy_for

    def stop_target(self, name: str) -> None:
        service, _ = self.targets.pop(name, (None, ""))
        if service is not None:
            self.group.stop(service)

    # --- measurements (each taken once per run) ----------------------------------

    def _memo(self, kind: str, name: str, fn: Callable[[], Any]) -> Any:
        if (kind, name) not in self.measured:
            self.measured[(kind, name)] = fn()
        return self.measured[(kind, name)]

    def throughput(self, name: str) -> dict[str, Any]:
        script = {
            "gateway_limits": self.limited_wrk_script,
            "litellm": self.wrk_script.with_name("litellm.lua"),
        }.get(name, self.wrk_script)

        def measure() -> dict[str, Any]:
            service, url = self.target(name)
            a = self.args
            self.settle()
            log(f"throughput {name}: warm-up {a.warmup}s, then {a.duration}s at 64 connections")
            run_wrk(self.tools["wrk"], url, script, connections=64, threads=2, seconds=a.warmup)
            pids = (
                [] if service is None else [service.proc.pid, *gunicorn_workers(service.proc.pid)]
            )
            # Per process, to see how wrk's keep-alive connections landed on
            # the two workers (gunicorn does not rebalance them).
            before = {pid: cpu_seconds([pid]) for pid in pids}
            wrk_cpu, started = children_cpu_seconds(), time.monotonic()
            busy0, total0 = machine_ticks()
            backing0 = backing_cpu()
            result = run_wrk(
                self.tools["wrk"],
                url,
                script,
                connections=64,
                threads=2,
                seconds=a.duration,
            )
            wall = time.monotonic() - started
            busy1, total1 = machine_ticks()
            backing1 = backing_cpu()
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
                "machine_busy": round(
                    (busy1 - busy0) / max(1, total1 - total0) * (os.cpu_count() or 1), 2
                ),
            }
            if service is not None and name != "direct":
                out["memory_after"] = memory_of(service.proc.pid).as_dict()
                out["busy_after_load_s"] = self.settle().get(name)
            log(f"  {name}: {result.rps:.0f} req/s, {result.errors} errors")
            return out

        result: dict[str, Any] = self._memo("throughput", name, measure)
        return result

    def latency_wrk(self, name: str) -> dict[str, Any]:
        def measure() -> dict[str, Any]:
            _, url = self.target(name)
            a = self.args
            self.settle()
            log(f"latency {name}: wrk --latency 16 connections, {a.latency_duration}s")
            run_wrk(self.tools["wrk"], url, self.wrk_script, connections=16, threads=2, seconds=2)
            result: WrkResult = run_wrk(
                self.tools["wrk"],
                url,
                self.wrk_script,
                connections=16,
                threads=2,
                seconds=a.latency_duration,
                latency=True,
            )
            return result.as_dict()

        result: dict[str, Any] = self._memo("latency_wrk", name, measure)
        return result

    def open_loop(self, name: str) -> dict[str, Any]:
        def measure() -> dict[str, Any]:
            _, url = self.target(name)
            a = self.args
            self.settle()
            log(f"open-loop {name}: {a.rate:.0f} req/s for {a.open_duration}s")
            body = json.dumps(REQUEST_BODY)
            return run_json_driver(
                [
                    sys.executable,
                    str(BENCH / "openloop.py"),
                    url,
                    "--rate",
                    str(a.rate),
                    "--duration",
                    str(a.open_duration),
                    "--auth",
                    self.key,
                    "--body",
                    body,
                    # Issue 10 asks for added latency "at 16 connections":
                    # the fixed rate goes over at most 16 of them.
                    "--max-connections",
                    "16",
                ],
                timeout=a.open_duration + 60,
            )

        result: dict[str, Any] = self._memo("open_loop", name, measure)
        return result

    # --- scenarios -------------------------------------------------------------------

    def scenario_throughput(self) -> dict[str, Any]:
        out = {"direct": self.throughput("direct"), "gateway": self.throughput("gateway")}
        if self.args.access_log_off:
            # One gateway at a time: two would share the Redis usage stream,
            # and the idle one's consumers would burn CPU on the other's load.
            self.stop_target("gateway")
            out["gateway_nolog"] = self.throughput("gateway_nolog")
            self.stop_target("gateway_nolog")
        return out

    def scenario_features(self) -> dict[str, Any]:
        """Throughput with limits on vs off, and usage+metrics on vs off.

        Each variant runs alone (one gateway at a time) right after the
        production gateway is measured, so the ratios share the machine's
        state as closely as a noisy machine allows.
        """
        out: dict[str, Any] = {}
        for variant in ("gateway_limits", "gateway_lean"):
            self.measured.pop(("throughput", "gateway"), None)
            self.stop_target("gateway")
            base = self.throughput("gateway")
            self.stop_target("gateway")
            out[variant] = {"gateway": base, variant: self.throughput(variant)}
            self.stop_target(variant)
        return out

    def scenario_latency(self) -> dict[str, Any]:
        return {
            "wrk": {"direct": self.latency_wrk("direct"), "gateway": self.latency_wrk("gateway")},
            "open_loop": {"direct": self.open_loop("direct"), "gateway": self.open_loop("gateway")},
        }

    def scenario_baseline(self) -> dict[str, Any]:
        out = {
            "throughput": {"bare": self.throughput("bare"), "gateway": self.throughput("gateway")},
            "wrk": {"bare": self.latency_wrk("bare"), "gateway": self.latency_wrk("gateway")},
            "open_loop": {"bare": self.open_loop("bare"), "gateway": self.open_loop("gateway")},
            "memory_idle_bare": self.results.get("memory_idle_bare"),
        }
        self.stop_target("bare")
        return out

    def scenario_memory(self) -> dict[str, Any]:
        self.target("gateway")
        after = self.throughput("gateway")["memory_after"]
        return {"idle": self.results["memory_idle"], "after_throughput": after}

    @contextlib.contextmanager
    def stream_upstream(self, stream_tokens: int) -> Iterator[tuple[Service, str] | None]:
        """Run the streaming upstream on ``self.stream_port``; yields (service,
        chat URL), or None (with a logged reason) when it does not start.

        ``--stream-upstream nginx`` (default): nginx with the echo module, a
        C upstream that costs the shared 2 cores almost nothing, as a remote
        provider would. ``emulator``: our Python emulator, which takes a good
        part of a core at 2,000 streams and so competes with the gateway.
        """
        a = self.args
        if a.stream_upstream == "nginx":
            try:
                service, _ = start_stream_nginx(
                    self.group,
                    self.workdir,
                    self.tools["nginx"],
                    stream_tokens,
                    a.chunk_interval_ms,
                    port=self.stream_port,
                )
            except BenchError as exc:
                self.stream_upstream_problem = f"the nginx stream upstream did not start: {exc}"
                yield None
                return
            try:
                yield service, f"http://{HOST}:{self.stream_port}{CHAT_PATH}"
            finally:
                self.group.stop(service)
            return
        # The emulator always comes from the working tree: it is test
        # equipment, not the code under test.
        if not (REPO / "providers" / "emulators" / "__main__.py").exists():
            self.stream_upstream_problem = (
                "the streaming emulator (providers/emulators) is not there yet"
            )
            yield None
            return
        argv = [sys.executable, "-m", "providers.emulators", "openai", "--host", HOST]
        argv += ["--port", str(self.stream_port), "--stream-tokens", str(stream_tokens)]
        argv += ["--chunk-interval-ms", str(a.chunk_interval_ms)]
        emulator = self.group.start(
            "emulator", argv, env=self.env, log_path=self.workdir / "emulator.log"
        )
        try:
            try:
                wait_http(f"http://{HOST}:{self.stream_port}/v1/models", emulator, timeout=30)
            except BenchError as exc:
                self.stream_upstream_problem = f"the streaming emulator did not start: {exc}"
                yield None
                return
            yield emulator, f"http://{HOST}:{self.stream_port}{CHAT_PATH}"
        finally:
            self.group.stop(emulator)

    def stream_ramp(self, stream_tokens: int) -> float:
        """Seconds over which the streams open. By default 0.8x one stream's
        length: in a steady state, N concurrent streams of T seconds arrive
        at N/T per second (Little's law); opening them a little faster than
        that makes sure all N are open at once at the peak."""
        if self.args.ramp is not None:
            return float(self.args.ramp)
        return round(0.8 * stream_tokens * self.args.chunk_interval_ms / 1000, 2)

    def _streams(
        self,
        url: str,
        model: str,
        streams: int,
        stream_tokens: int,
        rss_pid: int = 0,
        cpu_of: dict[str, list[int]] | None = None,
    ) -> dict[str, Any]:
        """Run the stream driver; ``cpu_of`` names process groups whose CPU
        (in cores, over the driver's run) goes into the result."""
        a = self.args
        timeout = stream_tokens * a.chunk_interval_ms / 1000 * 3 + 30
        argv = [sys.executable, str(BENCH / "streams.py"), url, "--streams", str(streams)]
        argv += ["--ramp", str(self.stream_ramp(stream_tokens)), "--auth", self.key]
        argv += ["--timeout", str(timeout), "--model", model]
        if rss_pid:
            argv += ["--rss-pid", str(rss_pid)]
        groups = cpu_of or {}
        cpu0 = {name: cpu_seconds(pids) for name, pids in groups.items()}
        busy0, total0 = machine_ticks()
        t0 = time.monotonic()
        out = run_json_driver(argv, timeout=timeout + 60)
        elapsed = time.monotonic() - t0
        busy1, total1 = machine_ticks()
        out["cpu_cores"] = {
            name: round((cpu_seconds(pids) - cpu0[name]) / elapsed, 2)
            for name, pids in groups.items()
        }
        out["cpu_cores"]["driver"] = out.get("driver_cpu_cores")
        out["machine_busy_cores"] = round(
            (busy1 - busy0) / max(1, total1 - total0) * (os.cpu_count() or 1), 2
        )
        return out

    def scenario_stream(self) -> dict[str, Any]:
        """Streams at each of ``--stream-levels`` concurrent streams, direct
        to the upstream and through the gateway, back to back per level: the
        TTFT overhead at each level, and so the largest level that meets the
        target on this machine."""
        a = self.args
        service, gateway_url = self.target("gateway")
        assert service is not None
        levels: list[dict[str, Any]] = []
        idle = memory_of(service.proc.pid).as_dict()
        with self.stream_upstream(a.stream_tokens) as upstream:
            if upstream is None:
                return {"skipped": self.stream_upstream_problem}
            upstream_service, direct_url = upstream
            upstream_pids = process_tree(upstream_service.proc.pid)
            stream_s = a.stream_tokens * a.chunk_interval_ms / 1000
            for streams in a.stream_levels:
                self.settle()
                log(
                    f"stream: {streams} streams direct to the {a.stream_upstream} upstream "
                    f"(~{stream_s:.0f}s each, opened over {self.stream_ramp(a.stream_tokens)}s)"
                )
                direct = self._streams(
                    direct_url,
                    "gpt-mock",
                    streams,
                    a.stream_tokens,
                    cpu_of={"upstream": upstream_pids},
                )
                self.settle()
                log(f"stream: {streams} streams through the gateway")
                pids = [service.proc.pid, *gunicorn_workers(service.proc.pid)]
                gateway = self._streams(
                    gateway_url,
                    "bench/stream",
                    streams,
                    a.stream_tokens,
                    service.proc.pid,
                    cpu_of={"gateway": pids, "upstream": upstream_pids},
                )
                gateway["server_cpu_cores"] = gateway["cpu_cores"]["gateway"]
                relayed = gateway.get("events_total") or 0
                wall = gateway.get("wall_s") or 0
                if relayed and wall:
                    # Gateway CPU-microseconds per event relayed (request
                    # set-up included): cores x seconds / events.
                    gateway["gateway_cpu_us_per_event"] = round(
                        gateway["server_cpu_cores"] * wall / relayed * 1e6, 1
                    )
                levels.append({"streams": streams, "direct": direct, "gateway": gateway})
        return {
            "upstream": a.stream_upstream,
            "ramp_s": self.stream_ramp(a.stream_tokens),
            "levels": levels,
            "memory_before": idle,
            "memory_after": memory_of(service.proc.pid).as_dict(),
            "stream_tokens": a.stream_tokens,
            "chunk_interval_ms": a.chunk_interval_ms,
        }

    def scenario_litellm(self) -> dict[str, Any]:
        """LiteLLM's proxy against the same nginx upstream with the same wrk
        load, measured right after a fresh throughput run of the gateway (as
        the features scenario pairs its variants), so both share the
        machine's state as closely as a noisy machine allows."""
        from litellm_target import DEFAULT_VENV, REQUIREMENTS, ensure_litellm_venv

        try:
            started = time.monotonic()
            python = ensure_litellm_venv(DEFAULT_VENV)
            log(f"litellm venv ready in {time.monotonic() - started:.0f}s ({python})")
        except (BenchError, OSError, subprocess.SubprocessError) as exc:
            return {"skipped": f"could not install litellm[proxy]: {exc}"}
        version = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        out: dict[str, Any] = {
            "version": version,
            "setup": (
                "`python -m litellm.proxy.proxy_cli --num_workers 2` in its own venv "
                f"(pins: `{REQUIREMENTS.relative_to(REPO)}`), master key only, no database, "
                "no callbacks, logs at ERROR (see `bench/litellm_target.py`)"
            ),
        }
        # Not the memoised figure from earlier in the run: back to back.
        self.measured.pop(("throughput", "gateway"), None)
        for name in ("gateway", "litellm"):
            try:
                result = self.throughput(name)
            except BenchError as exc:
                return {**out, "skipped": f"{name} failed: {exc}"}
            cores = result["cpu_cores"]["server"]
            out[name] = {
                "rps": result["rps"],
                "non_2xx": result["non_2xx"],
                "socket_errors": result["socket_errors"],
                "avg_ms": result["latency_ms"].get("avg"),
                "server_cpu_cores": cores,
                "req_per_cpu_s": round(result["rps"] / cores, 1) if cores else None,
                "memory_after": result.get("memory_after"),
            }
        self.stop_target("litellm")
        return out

    def scenario_soak(self) -> dict[str, Any]:
        """Steady open-loop load for ``--soak-duration`` seconds: errors, and
        whether the workers' memory keeps growing (a leak) or levels off."""
        a = self.args
        service, url = self.target("gateway")
        assert service is not None
        self.settle()
        log(f"soak: {a.soak_rate:.0f} req/s for {a.soak_duration:.0f}s (open loop)")
        argv = [sys.executable, str(BENCH / "openloop.py"), url, "--rate", str(a.soak_rate)]
        argv += ["--duration", str(a.soak_duration), "--auth", self.key]
        argv += ["--body", json.dumps(REQUEST_BODY)]
        samples: list[dict[str, Any]] = []
        started = time.monotonic()
        driver = subprocess.Popen(  # noqa: S603 - our own driver, fixed argv
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            while driver.poll() is None:
                mem = memory_of(service.proc.pid)
                samples.append({"t_s": round(time.monotonic() - started, 1), **mem.as_dict()})
                try:
                    driver.wait(timeout=a.soak_sample_every)
                except subprocess.TimeoutExpired:
                    pass
            out, err = driver.communicate(timeout=60)
        finally:
            if driver.poll() is None:
                driver.kill()
        if driver.returncode != 0:
            raise BenchError(f"openloop.py failed in the soak: {err[-1500:]}")
        result: dict[str, Any] = json.loads(out)
        # Growth is judged after the first minute: caches, pools and
        # pymalloc arenas fill up early and then should stay flat.
        warm = next((m for m in samples if m["t_s"] >= 60), samples[0]) if samples else None
        last = samples[-1] if samples else None
        if warm and last:
            result["rss_warm_mb"], result["rss_end_mb"] = warm["rss_mb"], last["rss_mb"]
            result["rss_max_mb"] = max(m["rss_mb"] for m in samples)
            result["rss_first_mb"] = samples[0]["rss_mb"]
            result["rss_growth_pct"] = round(
                (last["rss_mb"] - warm["rss_mb"]) / warm["rss_mb"] * 100, 1
            )
            result["pss_growth_pct"] = round(
                (last["pss_mb"] - warm["pss_mb"]) / warm["pss_mb"] * 100, 1
            )
        # A 4xx/5xx answer is as much a failure as a socket error here.
        result["failed"] = result.get("errors", 0) + result.get("non_2xx", 0)
        result["memory_samples"] = samples
        result["rate"] = a.soak_rate
        result["duration_s"] = a.soak_duration
        return result

    def scenario_workers(self) -> dict[str, Any]:
        """gevent vs gthread under the mixed workload the gateway serves:
        long SSE streams held open while short requests keep coming."""
        a = self.args
        out: dict[str, Any] = {
            "streams": a.mix_streams,
            "connections": 16,
            "threads_per_worker": a.gthread_threads,
        }
        tokens = int((a.mix_seconds + 4) * 1000 / a.chunk_interval_ms)
        with self.stream_upstream(tokens) as upstream:
            if upstream is None:
                return {"skipped": self.stream_upstream_problem}
            for kind in ("gevent", "gthread"):
                name = "gateway" if kind == "gevent" else "gateway_gthread"
                service, url = self.target(name)
                assert service is not None
                self.settle()
                log(
                    f"workers {kind}: {a.mix_streams} streams + wrk 16 connections, "
                    f"{a.mix_seconds:.0f}s"
                )
                pids = [service.proc.pid, *gunicorn_workers(service.proc.pid)]
                cpu0, t0 = cpu_seconds(pids), time.monotonic()
                streams_result: dict[str, Any] = {}

                def streams_load(
                    url: str = url, box: dict[str, Any] = streams_result, master: int = pids[0]
                ) -> None:
                    box.update(
                        self._streams(url, "bench/stream", a.mix_streams, tokens, rss_pid=master)
                    )

                streamer = threading.Thread(target=streams_load, daemon=True)
                streamer.start()
                # Let the streams open before the short requests start.
                time.sleep(min(3.0, self.stream_ramp(tokens)) + 1)
                wrk = run_wrk(
                    self.tools["wrk"],
                    url,
                    self.wrk_script,
                    connections=16,
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
                    "memory_after": memory_of(service.proc.pid).as_dict(),
                }
            # The gevent gateway stays up for the scenarios after this one.
            self.stop_target("gateway_gthread")
        return out

    def _py_spy(self, worker: int, seconds: int, label: str, load: Callable[[], None]) -> Any:
        """Sample one worker with py-spy while ``load`` runs; return the summary."""
        raw = self.workdir / f"profile-{label}.txt"
        argv = [self.tools["py_spy"], "record", "--pid", str(worker), "--duration", str(seconds)]
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
        from profile_summary import summarize

        return summarize(raw.read_text(), top=self.args.profile_top, label=label)

    def scenario_profile(self) -> dict[str, Any]:
        a = self.args
        if not self.tools.get("py_spy"):
            return {"skipped": "py-spy is not installed"}
        service, url = self.target("gateway")
        assert service is not None
        workers = gunicorn_workers(service.proc.pid)
        if not workers:
            return {"skipped": "no gunicorn worker found"}
        seconds = a.profile_seconds
        self.settle()
        log(f"profile: py-spy on worker {workers[0]} for {seconds}s under wrk, 64 connections")
        wrk, script = self.tools["wrk"], self.wrk_script
        out: dict[str, Any] = {}

        def requests_load() -> None:
            run_wrk(wrk, url, script, connections=64, threads=2, seconds=seconds + 2)

        out["requests"] = self._py_spy(
            workers[0], seconds, "requests (wrk, 64 connections, non-streaming)", requests_load
        )
        # Streams: enough tokens to outlast the sampling window.
        tokens = int((seconds + 4) * 1000 / a.chunk_interval_ms)
        with self.stream_upstream(tokens) as upstream:
            if upstream is None:
                out["streams"] = {"skipped": self.stream_upstream_problem}
            else:
                log(f"profile: py-spy on worker {workers[0]} during {a.streams} streams")

                def streams_load() -> None:
                    self._streams(url, "bench/stream", a.streams, tokens)

                out["streams"] = self._py_spy(
                    workers[0],
                    seconds,
                    f"streams ({a.streams} concurrent SSE streams relayed)",
                    streams_load,
                )
        texts = [v.pop("text") for v in out.values() if "text" in v]
        if texts:
            (BENCH / "profile.txt").write_text("\n\n".join(texts))
        return out

    # --- driver ------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        self.results["started"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.results["load_before"] = os.getloadavg()
        self.results["yardstick_ms"] = python_yardstick_ms()
        started = time.monotonic()
        self.setup()
        for name in self.args.scenarios:
            log(f"== scenario {name}")
            fn: Callable[[], dict[str, Any]] = getattr(self, f"scenario_{name}")
            self.results["scenarios"][name] = fn()
        self.results["load_after"] = os.getloadavg()
        self.results["elapsed_s"] = round(time.monotonic() - started, 1)
        self.results["gateway_log_tail"] = _errors_in_logs(
            sorted(self.workdir.glob("gateway*.log"))
        )
        return self.results


def _which(tool: str) -> bool:
    from shutil import which

    return which(tool) is not None


def _errors_in_logs(paths: list[Path], limit: int = 15) -> list[str]:
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


def _levels(text: str) -> list[int]:
    try:
        levels = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not levels or levels[0] < 1 or levels[-1] > 5000:
        raise argparse.ArgumentTypeError("stream levels must be within 1..5000")
    return levels


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/run.py",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    # No argparse choices: with nargs="*" they reject the empty default.
    parser.add_argument(
        "scenarios",
        nargs="*",
        metavar="scenario",
        help=f"any of {', '.join(SCENARIOS)} (default: all)",
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
    parser.add_argument(
        "--streams",
        type=int,
        default=2000,
        help="concurrent SSE streams while profiling",
    )
    parser.add_argument(
        "--stream-levels",
        type=_levels,
        default="250,500,1000,2000",
        help="comma-separated counts of concurrent streams for the stream scenario",
    )
    parser.add_argument("--stream-tokens", type=int, default=200)
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
        "--mix-streams", type=int, default=200, help="streams held open in the workers scenario"
    )
    parser.add_argument(
        "--mix-seconds", type=float, default=15.0, help="seconds of wrk in the workers scenario"
    )
    parser.add_argument(
        "--gthread-threads",
        type=int,
        default=128,
        help="threads per worker for the gthread variant (one per open stream)",
    )
    parser.add_argument("--soak-duration", type=float, default=600.0, help="soak seconds")
    parser.add_argument("--soak-rate", type=float, default=300.0, help="soak requests/s")
    parser.add_argument(
        "--soak-sample-every", type=float, default=15.0, help="seconds between RSS samples"
    )
    parser.add_argument("--profile-seconds", type=int, default=10)
    parser.add_argument("--profile-top", type=int, default=25)
    parser.add_argument(
        "--source",
        choices=("tree", "head"),
        default="tree",
        help="gateway code to run: the working tree, or a clean export of git HEAD",
    )
    parser.add_argument(
        "--no-access-log-variant",
        dest="access_log_off",
        action="store_false",
        help="skip the extra throughput run with XROUTER_ACCESS_LOG=false",
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
    args = parser.parse_args(argv)
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(
            f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}"
        )
    args.scenarios = list(dict.fromkeys(args.scenarios)) or list(SCENARIOS)
    if args.duration > 120 or args.open_duration > 120 or args.streams > 5000:
        parser.error("durations are capped at 120 s and streams at 5000")
    if not 10 <= args.soak_duration <= 3600:
        parser.error("--soak-duration must be within 10..3600 s")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    signal.signal(signal.SIGTERM, _on_sigterm)
    # A shell without job control starts background commands with SIGINT
    # ignored; make Ctrl-C / SIGINT always unwind through the clean-up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    command = "python bench/run.py" + "".join(f" {a}" for a in (argv or sys.argv[1:]))
    with tempfile.TemporaryDirectory(prefix="xrbench-") as tmp:
        bench = Bench(args, Path(tmp))
        try:
            results = bench.run()
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
