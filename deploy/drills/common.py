"""Shared parts of the failure drills (deploy/drills/*.py, `make drill-*`).

Every drill starts real components on loopback (ports 27000-27999), drives
bounded load through the gateway, injects one fault, then checks the
promises and prints a report. Processes are started by the drill and
stopped by it, by pid, whatever happens (``Drill`` is a context manager).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import requests

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
MODEL = "drill/chat"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def wait_port(port: int, timeout: float, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.closing(socket.socket()) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout:.0f}s")


def wait_http(
    url: str, timeout: float, ok: Callable[[requests.Response], bool] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            response = requests.get(url, timeout=1, headers={"Host": "localhost"})
            if (ok or (lambda r: r.status_code == 200))(response):
                return
            last = f"{response.status_code} {response.text[:200]}"
        except requests.RequestException as exc:
            last = str(exc)
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout:.0f}s: {last}")


def require_free(*ports: int) -> None:
    """Refuse to start when a port is taken: an old drill or another program."""
    taken = []
    for port in ports:
        with contextlib.closing(socket.socket()) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                taken.append(port)
    if taken:
        raise SystemExit(f"ports {taken} are in use on 127.0.0.1: is another drill running?")


class Drill:
    """Owns the drill's work directory and every process it starts."""

    def __init__(self, name: str, ports: tuple[int, ...] = ()) -> None:
        require_free(*ports)
        self.name = name
        self.dir = ROOT / "var" / "drills" / name
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.cleanups: list[Callable[[], None]] = []

    def __enter__(self) -> Drill:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        return self

    def __exit__(self, *exc: object) -> None:
        for name in reversed(list(self.processes)):
            self.stop(name, timeout=10)
        for cleanup in reversed(self.cleanups):
            with contextlib.suppress(Exception):
                cleanup()

    def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        logfile = (self.dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            argv,
            env={**os.environ, **(env or {})},
            cwd=cwd or ROOT,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = process
        return process

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> float:
        """Signal the process (and its session) and wait; SIGKILL after timeout."""
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return 0.0
        start = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        return time.monotonic() - start

    def kill(self, name: str) -> None:
        """SIGKILL one process (not its session): the fault of a drill."""
        process = self.processes[name]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        # Its children (if any) stay in the session and are reaped at exit.
        self.processes[f"{name}-killed-{process.pid}"] = process


def emulator(drill: Drill, port: int, tokens: int = 20, interval_ms: int = 50) -> str:
    """An OpenAI-compatible emulator whose streams last tokens * interval."""
    drill.start(
        f"emulator-{port}",
        [
            PY,
            "-m",
            "providers.emulators",
            "openai",
            "--port",
            str(port),
            "--stream-tokens",
            str(tokens),
            "--chunk-interval-ms",
            str(interval_ms),
        ],
    )
    wait_http(f"http://127.0.0.1:{port}/_emulator/health", 15)
    catalog = drill.dir / "catalog.yaml"
    catalog.write_text(
        "providers:\n"
        "  - name: drill\n"
        "    kind: openai\n"
        f"    base_url: http://127.0.0.1:{port}/v1\n"
        "    api_key_env: XROUTER_DRILL_UPSTREAM_KEY\n"
        "models:\n"
        f"  - id: {MODEL}\n"
        "    provider: drill\n"
        "    upstream: gpt-mock\n"
        "    pricing: {prompt: 0.1, completion: 0.2}\n",
        encoding="utf-8",
    )
    return str(catalog)


def base_env(drill: Drill, database_url: str, redis_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "SECURE_SSL_REDIRECT": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "XROUTER_VAR_DIR": str(drill.dir / "var"),
        "XROUTER_DRILL_UPSTREAM_KEY": "drill",
        "XROUTER_ACCESS_LOG": "false",
        "LOG_LEVEL": "WARNING",
        # A record left pending by a stopped or killed worker is claimed soon.
        "XROUTER_USAGE_CLAIM_IDLE_SECONDS": "3",
        "DB_CONNECT_TIMEOUT": "2",
    }


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [PY, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return result.stdout.strip()


def gateway(
    drill: Drill,
    name: str,
    port: int,
    env: dict[str, str],
    catalog: str,
    graceful: int = 30,
    workers: int = 1,
) -> None:
    metrics_dir = drill.dir / f"metrics-{name}"
    metrics_dir.mkdir(exist_ok=True)
    drill.start(
        name,
        [PY, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "xrouter_site.wsgi:application"],
        env={
            **env,
            "XROUTER_BIND": f"127.0.0.1:{port}",
            "WEB_CONCURRENCY": str(workers),
            "XROUTER_GRACEFUL_TIMEOUT": str(graceful),
            "XROUTER_CATALOG": catalog,
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        },
    )
    wait_http(f"http://127.0.0.1:{port}/healthz", 60)


@dataclass
class Result:
    request_id: str
    stream: bool
    started: float
    status: int = 0
    ok: bool = False
    error: str = ""
    server: str = ""
    ended: float = 0.0


@dataclass
class Load:
    """Bounded load: `clients` threads, chat and streams, until `seconds` pass."""

    url: str
    key: str
    clients: int
    seconds: float
    stream_share: float = 0.5
    max_requests: int = 20000
    results: list[Result] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        threads = [
            threading.Thread(target=self._client, args=(index, deadline), daemon=True)
            for index in range(self.clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=self.seconds + 180)

    def _client(self, index: int, deadline: float) -> None:
        session = requests.Session()
        count = 0
        while time.monotonic() < deadline and len(self.results) < self.max_requests:
            stream = (count * 7 + index) % 100 < self.stream_share * 100
            count += 1
            result = Result(
                request_id=f"drill-{uuid.uuid4().hex}", stream=stream, started=time.monotonic()
            )
            try:
                self._call(session, result)
            except requests.RequestException as exc:
                result.error = f"{type(exc).__name__}: {exc}"[:300]
                session.close()
                session = requests.Session()
            result.ended = time.monotonic()
            with self._lock:
                self.results.append(result)

    def _call(self, session: requests.Session, result: Result) -> None:
        body: dict[str, Any] = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "drill"}],
        }
        if result.stream:
            body.update(stream=True, stream_options={"include_usage": True})
        response = session.post(
            f"{self.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {self.key}", "X-Request-ID": result.request_id},
            json=body,
            stream=result.stream,
            timeout=(5, 60),
        )
        result.status = response.status_code
        result.server = response.headers.get("X-Served-By", "")
        if response.status_code != 200:
            result.error = f"HTTP {response.status_code}: {response.text[:200]}"
            return
        if not result.stream:
            payload = response.json()
            result.ok = bool(payload.get("choices")) and payload.get("usage") is not None
            if not result.ok:
                result.error = f"bad body {str(payload)[:200]}"
            return
        done = usage = False
        for line in response.iter_lines():
            if line == b"data: [DONE]":
                done = True
            elif line.startswith(b"data: "):
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    result.error = f"stream error {chunk['error']}"
                if chunk.get("usage"):
                    usage = True
        result.ok = done and usage and not result.error
        if not result.ok and not result.error:
            result.error = "cut stream" if not done else "stream without usage"

    def answered(self) -> list[Result]:
        return [r for r in self.results if r.ok]

    def failed(self) -> list[Result]:
        return [r for r in self.results if not r.ok]


def usage_counts(database_url: str, request_ids: list[str]) -> dict[str, int]:
    with contextlib.closing(psycopg2.connect(database_url, connect_timeout=3)) as conn:
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT request_id, count(*) FROM routing_usagerecord "
                "WHERE request_id = ANY(%s) GROUP BY request_id",
                (request_ids,),
            )
            return {row[0]: row[1] for row in cursor.fetchall()}


def wait_usage(database_url: str, answered: list[Result], timeout: float) -> tuple[int, int, float]:
    """Wait for one usage record per answered request; (missing, doubled, waited)."""
    ids = [r.request_id for r in answered]
    start = time.monotonic()
    counts: dict[str, int] = {}
    while time.monotonic() - start < timeout:
        try:
            counts = usage_counts(database_url, ids)
        except psycopg2.Error:
            counts = {}
        if len(counts) == len(ids):
            break
        time.sleep(1)
    missing = sum(1 for i in ids if i not in counts)
    doubled = sum(1 for c in counts.values() if c > 1)
    return missing, doubled, time.monotonic() - start


def summarize(load: Load) -> dict[str, Any]:
    total = len(load.results)
    failed = load.failed()
    streams = [r for r in load.results if r.stream]
    cut = [r for r in streams if not r.ok and r.status == 200]
    return {
        "requests": total,
        "answered": total - len(failed),
        "failed": len(failed),
        "error_rate": (len(failed) / total) if total else 1.0,
        "streams": len(streams),
        "cut_streams": len(cut),
        "first_errors": sorted({r.error for r in failed})[:5],
    }


@contextlib.contextmanager
def fresh_database(admin_url: str, name: str) -> Iterator[str]:
    """A new PostgreSQL database on the machine's server, dropped afterwards."""
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with conn.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


def report(title: str, rows: dict[str, Any], broken: list[str]) -> int:
    print(f"\n===== {title} =====")
    for key, value in rows.items():
        print(f"  {key:<28} {value}")
    if broken:
        print("  RESULT: FAIL")
        for item in broken:
            print(f"    - {item}")
        return 1
    print("  RESULT: PASS (every promise kept)")
    return 0
