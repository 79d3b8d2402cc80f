"""Run the real gateway (gunicorn + gevent workers) against the test database.

Use from a test that has the ``transactional_db`` fixture, so rows it
creates are committed and visible to the gateway processes::

    def test_x(transactional_db, make_key):
        key = make_key()
        with running_gateway(workers=2) as gateway:
            requests.get(gateway.url + "/v1/models", headers=...)

The processes get the pytest-django test database and the same cache
(``REDIS_URL``) as the test process.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import requests
from django.db import connection

from tests.waiting import wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_database_url() -> str:
    """Return a DATABASE_URL for the database this test process uses."""
    conf = connection.settings_dict
    if conf["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{conf['NAME']}"
    user = conf.get("USER") or "postgres"
    password = f":{conf['PASSWORD']}" if conf.get("PASSWORD") else ""
    host = conf.get("HOST") or "127.0.0.1"
    port = conf.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{conf['NAME']}"


@dataclass
class Gateway:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def worker_pids(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, check=False
        ).stdout
        return [int(pid) for pid in out.split()]


@contextlib.contextmanager
def running_gateway(
    *,
    workers: int = 2,
    env: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
    timeout: float = 30.0,
) -> Iterator[Gateway]:
    """Start gunicorn with the repo's config; stop it on exit."""
    if connection.settings_dict[
        "ENGINE"
    ] == "django.db.backends.sqlite3" and connection.settings_dict["NAME"].startswith("file:"):
        raise RuntimeError("the gateway processes need a file or PostgreSQL test database")
    port = free_port()
    full_env = dict(os.environ)
    full_env.update(
        {
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": test_database_url(),
            "XROUTER_BIND": f"127.0.0.1:{port}",
            "WEB_CONCURRENCY": str(workers),
            "XROUTER_CATALOG": "",
            "PYTHONUNBUFFERED": "1",
        }
    )
    full_env.update(env or {})
    log_dir = log_dir or Path(os.environ.get("XROUTER_TEST_LOG_DIR", "/tmp"))
    log_path = log_dir / f"gateway-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                str(REPO_ROOT / "deploy" / "gunicorn.conf.py"),
                "xrouter_site.wsgi:application",
            ],
            cwd=REPO_ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    gateway = Gateway(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    try:
        started = time.monotonic()

        def healthy() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited early:\n{gateway.log()[-3000:]}")
            return requests.get(gateway.url + "/healthz", timeout=1).status_code == 200

        wait_until(
            healthy,
            timeout=timeout,
            interval=0.1,
            what=lambda: f"gunicorn to answer /healthz:\n{gateway.log()[-3000:]}",
            ignoring=(requests.RequestException,),
        )
        # Every worker must be up, not only the first to answer.
        wait_until(
            lambda: len(gateway.worker_pids()) >= workers,
            timeout=max(0.1, timeout - (time.monotonic() - started)),
            interval=0.1,
            what=lambda: f"{workers} gunicorn workers:\n{gateway.log()[-3000:]}",
        )
        yield gateway
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
