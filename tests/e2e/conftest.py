"""End-to-end stack: real gunicorn workers, Celery worker and beat, emulators.

Everything runs as separate processes, as in production: the gateway
(``running_gateway``, gevent workers) with the production settings module,
a Celery worker and beat on the real Redis broker, and two OpenAI-compatible
emulators as upstreams. The processes share this test run's PostgreSQL test
database and Redis cache (``REDIS_URL``); the broker gets its own Redis
database (``XROUTER_E2E_BROKER_URL``, default DB 9) that is emptied at start,
so no stale task from an earlier run is delivered.

Processes live for one test module; each test loads its own catalog and key
(committed, since the stack is outside the test's transaction) and waits
until every gateway worker routes with it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from celery import Celery

from keys.services import CreatedKey
from providers.emulators.testing import RunningEmulator, start_emulator
from routing.models import UsageRecord
from routing.usage import records as usage
from tests.gateway_process import REPO_ROOT, Gateway, running_gateway, test_database_url

BROKER_URL = os.environ.get("XROUTER_E2E_BROKER_URL", "redis://127.0.0.1:6379/9")
UPSTREAM_KEY = "upstream-secret-for-e2e"
CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"

#: Settings every process of the stack shares (the module adds its own).
BASE_ENV = {
    # Production settings: the usage consumer runs in the gateway workers.
    "DJANGO_SETTINGS_MODULE": "xrouter_site.settings",
    "CELERY_BROKER_URL": BROKER_URL,
    "TEST_UPSTREAM_KEY": UPSTREAM_KEY,
    "SECURE_SSL_REDIRECT": "false",
    "XROUTER_BREAKER_FAILURES": "3",
    "XROUTER_BREAKER_WINDOW_SECONDS": "60",
    "XROUTER_BREAKER_COOLDOWN_SECONDS": "60",
    "XROUTER_RETRY_BACKOFF_BASE_SECONDS": "0.001",
    "XROUTER_REQUEST_DEADLINE_SECONDS": "5",
    "XROUTER_HEALTH_TIMEOUT_SECONDS": "0.5",
    "LOG_LEVEL": "WARNING",
    # Stop quickly at teardown instead of waiting for idle keep-alive clients.
    "XROUTER_GRACEFUL_TIMEOUT": "2",
}


def chat_hits(emulator: RunningEmulator) -> int:
    return int(emulator.control.stats()["requests_by_path"].get(CHAT_PATH, 0))


def model_list_hits(emulator: RunningEmulator) -> int:
    return int(emulator.control.stats()["requests_by_path"].get(MODELS_PATH, 0))


def celery_client() -> Celery:
    """A Celery app that talks to the stack's broker (the test process is eager)."""
    return Celery("e2e-client", broker=BROKER_URL, set_as_current=False)


@dataclass
class Stack:
    """The running processes of one module."""

    gateway: Gateway
    env: dict[str, str]
    celery: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))

    @property
    def url(self) -> str:
        return self.gateway.url

    def logs(self) -> str:
        """Return the tail of every process log, for failure messages."""
        parts = [self.gateway.log()[-3000:]]
        for path in sorted(self.log_dir.glob("celery-*.log")):
            parts.append(f"--- {path.name}\n" + path.read_text(errors="replace")[-3000:])
        return "\n".join(parts)


def _start_celery(argv: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "xrouter_site", *argv],
            cwd=REPO_ROOT,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_for_worker(timeout: float = 30.0) -> list[dict[str, Any]]:
    client = celery_client()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            replies = client.control.ping(timeout=0.5)
            if replies:
                return list(replies)
        raise RuntimeError("the Celery worker never answered a ping over the broker")
    finally:
        client.close()


@contextlib.contextmanager
def running_stack(
    env: Mapping[str, str], *, celery: bool = True, shared_cache: bool = True
) -> Iterator[Stack]:
    """Start gunicorn (2 workers) and, with ``celery``, a worker and beat.

    ``shared_cache=False`` leaves ``REDIS_URL`` out, as in a zero-config run:
    each process then has its own memory cache.
    """
    full_env = {**os.environ, **BASE_ENV, **env, "DATABASE_URL": test_database_url()}
    # Empty, not absent: running_gateway starts from os.environ again.
    if not celery:
        full_env["CELERY_BROKER_URL"] = ""
    if not shared_cache:
        full_env["REDIS_URL"] = ""
    log_dir = Path(tempfile.mkdtemp(prefix="xrouter-e2e-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        if celery:
            redis.Redis.from_url(BROKER_URL).flushdb()  # the dedicated broker DB only
            processes.append(
                _start_celery(
                    [
                        "worker",
                        "--loglevel",
                        "INFO",
                        "--concurrency",
                        "4",
                        "--without-gossip",
                        "--without-mingle",
                        "--hostname",
                        f"e2e-{os.getpid()}@%h",
                    ],
                    full_env,
                    log_dir / "celery-worker.log",
                )
            )
            processes.append(
                _start_celery(
                    [
                        "beat",
                        "--loglevel",
                        "INFO",
                        "--max-interval",
                        "1",
                        "--schedule",
                        str(log_dir / "beat-schedule"),
                    ],
                    full_env,
                    log_dir / "celery-beat.log",
                )
            )
        with running_gateway(workers=2, env=full_env, log_dir=log_dir) as gateway:
            stack = Stack(gateway=gateway, env=full_env, celery=processes, log_dir=log_dir)
            if celery:
                _wait_for_worker()
            yield stack
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def primary() -> Iterator[RunningEmulator]:
    emulator = start_emulator("openai", stream_tokens=10, chunk_interval_ms=5, timeout_s=10)
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="module")
def backup() -> Iterator[RunningEmulator]:
    emulator = start_emulator("openai", stream_tokens=10, chunk_interval_ms=5, timeout_s=10)
    try:
        yield emulator
    finally:
        emulator.stop()


def two_provider_catalog(primary: RunningEmulator, backup: RunningEmulator) -> str:
    """``team/chat`` on primary then backup, and single-provider models around it."""
    return f"""
providers:
  - {{name: primary, kind: openai, base_url: "{primary.base_url}/v1",
      api_key_env: TEST_UPSTREAM_KEY, options: {{read_timeout: 1}}}}
  - {{name: backup, kind: openai, base_url: "{backup.base_url}/v1",
      api_key_env: TEST_UPSTREAM_KEY}}
models:
  - id: team/chat
    pricing: {{prompt: 1.5, completion: 3}}
    deployments:
      - {{provider: primary, upstream: gpt-mock, priority: 0}}
      - {{provider: backup, upstream: gpt-mock-large, priority: 1}}
  - id: only/primary
    provider: primary
    upstream: gpt-mock
    pricing: {{prompt: 1, completion: 1}}
  - id: solo/backup
    provider: backup
    upstream: gpt-mock
    pricing: {{prompt: 2, completion: 2}}
  - id: solo/third
    provider: backup
    upstream: gpt-mock-large
    pricing: {{prompt: 4, completion: 4}}
"""


class Client:
    """Talks to the stack's gateway with one key."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"

    def chat(
        self, model: str, *, headers: dict[str, str] | None = None, **body: Any
    ) -> requests.Response:
        payload = {"model": model, "messages": [{"role": "user", "content": "hello"}], **body}
        return self.session.post(
            self.url + "/v1/chat/completions",
            json=payload,
            headers=headers,
            timeout=15,
            stream=bool(body.get("stream")),
        )

    def wait_routable(self, model: str, timeout: float = 10.0) -> None:
        """Wait until every worker lists ``model`` (each re-reads the catalog once a second)."""
        deadline = time.monotonic() + timeout
        streak = 0
        while streak < 6:
            response = self.session.get(self.url + "/v1/models", timeout=5)
            listed = response.ok and any(m["id"] == model for m in response.json()["data"])
            streak = streak + 1 if listed else 0
            if time.monotonic() > deadline:
                raise AssertionError(f"{model} never became routable: {response.text[:300]}")
            time.sleep(0.05)


@pytest.fixture
def client(
    stack: Stack,
    transactional_db: None,
    load_catalog: Callable[[str], None],
    make_key: Callable[..., CreatedKey],
    primary: RunningEmulator,
    backup: RunningEmulator,
) -> Iterator[Client]:
    """Fresh emulators, the two-provider catalog and a key, routable everywhere."""
    primary.control.reset()
    backup.control.reset()
    # Every test's catalog has the same public models but new deployment ids
    # (the database is flushed between tests). A marker alias unique to this
    # catalog shows that every worker routes with it, not with the previous
    # test's table, whose failures would count against stale breakers.
    marker = f"e2e/catalog-{uuid.uuid4().hex[:12]}"
    load_catalog(
        two_provider_catalog(primary, backup) + f"  - {{id: {marker}, fallbacks: [solo/third]}}\n"
    )
    api = Client(stack.url, make_key().plaintext)
    api.wait_routable(marker)
    yield api
    api.session.close()
    drain_usage(stack)


def drain_usage(stack: Stack, timeout: float = 10.0) -> None:
    """Wait until the gateway has written every usage record it holds.

    The test database is truncated after each test; a usage insert racing
    that TRUNCATE deadlocks on the team foreign key.
    """
    url = stack.env.get("REDIS_URL")
    if not url:
        # Zero-config: the workers' buffers flush every second.
        time.sleep(1.5)
        return
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    # Entries are deleted from the stream only after their rows committed.
    while client.xlen(usage.STREAM_KEY) and time.monotonic() < deadline:
        time.sleep(0.05)


def usage_row(request_id: str, timeout: float = 10.0) -> UsageRecord:
    """Wait for the gateway workers' usage consumer to write one request's record."""
    deadline = time.monotonic() + timeout
    while True:
        rows = list(UsageRecord.objects.filter(request_id=request_id))
        if rows:
            assert len(rows) == 1
            return rows[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no usage record for {request_id} after {timeout}s")
        time.sleep(0.1)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> float:
    """Poll ``predicate``; return the seconds it took to hold, or fail."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
    return time.monotonic() - started
