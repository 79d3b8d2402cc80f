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
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families

from keys.services import CreatedKey
from providers.emulators.testing import RunningEmulator, start_emulator
from routing.models import UsageRecord
from routing.usage import records as usage
from tests.gateway_process import REPO_ROOT, Gateway, running_gateway, test_database_url
from tests.waiting import wait_until

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
    # Production settings refuse to serve on the public placeholder key.
    "SECRET_KEY": "xrouter-e2e-only-key-never-deployed-Hq7rW2mZ9tPx4LbN6sVc",
    # The emulators listen on loopback, which production settings deny.
    "XROUTER_OUTBOUND_ALLOW_LOOPBACK": "true",
    "XROUTER_BREAKER_FAILURES": "3",
    "XROUTER_BREAKER_WINDOW_SECONDS": "60",
    "XROUTER_BREAKER_COOLDOWN_SECONDS": "60",
    "XROUTER_RETRY_BACKOFF_BASE_SECONDS": "0.001",
    "XROUTER_REQUEST_DEADLINE_SECONDS": "5",
    "XROUTER_HEALTH_TIMEOUT_SECONDS": "0.5",
    "LOG_LEVEL": "WARNING",
    # Stop quickly at teardown instead of waiting for idle keep-alive clients.
    "XROUTER_GRACEFUL_TIMEOUT": "2",
    # X-Served-By names the worker that answered, so a test can reach each one.
    "XROUTER_DEBUG_SERVED_BY": "true",
}

#: How long after shared state changes every worker has re-read it: health
#: results and breaker states are re-read from the cache at most once a
#: second (routing.health, routing.breaker), lazily at the next request, so
#: one second plus a margin for the request itself is a bound, not a guess.
REREAD_SECONDS = 1.1


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
    replies: list[dict[str, Any]] = []

    def answered() -> bool:
        replies.extend(client.control.ping(timeout=0.5))
        return bool(replies)

    try:
        wait_until(answered, timeout=timeout, what="the Celery worker to answer a ping")
        return replies
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
    """Talks to the stack's gateway with one key.

    ``workers`` are the gateway's worker pids: :meth:`from_every_worker`
    repeats a request until each of them has answered it.
    """

    def __init__(self, url: str, key: str, workers: Collection[int]) -> None:
        self.url = url
        self.workers = frozenset(workers)
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"

    def chat(
        self,
        model: str,
        *,
        headers: dict[str, str] | None = None,
        session: requests.Session | None = None,
        **body: Any,
    ) -> requests.Response:
        """POST a chat, on ``session`` if given (see :meth:`from_every_worker`)."""
        payload = {"model": model, "messages": [{"role": "user", "content": "hello"}], **body}
        return (session or self.session).post(
            self.url + "/v1/chat/completions",
            json=payload,
            headers=headers,
            timeout=15,
            stream=bool(body.get("stream")),
        )

    def from_every_worker(
        self,
        send: Callable[[requests.Session], requests.Response],
        accept: Callable[[requests.Response], bool],
        *,
        what: str,
        timeout: float = 15.0,
    ) -> list[requests.Response]:
        """Repeat ``send`` until every worker has answered with a response ``accept`` takes.

        Each try opens a new connection (a kept-alive one would stay with one
        worker), asks /v1/models which worker took it (``X-Served-By``), and
        then calls ``send`` with a session on that same connection, so the
        same worker answers, also where the path sets no ``X-Served-By``
        (/metrics). ``accept`` may also assert on every response. Returns
        every response ``send`` got.
        """
        responses: list[requests.Response] = []
        accepted: set[int] = set()

        def everyone() -> bool:
            with requests.Session() as session:
                session.headers.update(self.session.headers)
                served = session.get(self.url + MODELS_PATH, timeout=5)
                worker = int(served.headers["X-Served-By"])
                response = send(session)
            responses.append(response)
            answered_by = response.headers.get("X-Served-By")
            assert answered_by in (None, str(worker)), "the kept-alive connection changed worker"
            if accept(response):
                accepted.add(worker)
            return accepted >= self.workers

        wait_until(
            everyone,
            timeout=timeout,
            interval=0.02,
            what=lambda: (
                f"{what} from every worker {sorted(self.workers)} "
                f"(so far from {sorted(accepted)}, {len(responses)} tries)"
            ),
        )
        return responses

    def wait_routable(self, model: str, timeout: float = 15.0) -> None:
        """Wait until every worker lists ``model`` (each re-reads the catalog on its own)."""

        def lists(response: requests.Response) -> bool:
            return response.ok and any(m["id"] == model for m in response.json()["data"])

        self.from_every_worker(
            lambda session: session.get(self.url + MODELS_PATH, timeout=5),
            lists,
            what=f"{model} in /v1/models",
            timeout=timeout,
        )

    def deployment_health(self, response: requests.Response) -> dict[str, bool]:
        """Return ``xrouter_deployment_healthy`` by deployment id from a /metrics answer."""
        assert response.status_code == 200, response.text[:300]
        return {
            sample.labels["deployment"]: sample.value == 1
            for family in text_string_to_metric_families(response.text)
            if family.name == "xrouter_deployment_healthy"
            for sample in family.samples
        }

    def metrics(self, session: requests.Session) -> requests.Response:
        """Scrape /metrics (the stack allows loopback without a token)."""
        return session.get(self.url + "/metrics", timeout=5)


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
    api = Client(stack.url, make_key().plaintext, stack.gateway.worker_pids())
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
        # Zero-config: each worker's buffer is private and flushed every
        # second; nothing outside the worker can see it empty, so wait out
        # that one flush interval (plus the insert) instead.
        time.sleep(1.5)
        return
    client = redis.Redis.from_url(url)
    # Entries are deleted from the stream only after their rows committed.
    wait_until(
        lambda: client.xlen(usage.STREAM_KEY) == 0,
        timeout=timeout,
        what=lambda: f"the usage stream to drain ({client.xlen(usage.STREAM_KEY)} left)",
    )


def usage_row(request_id: str, timeout: float = 10.0) -> UsageRecord:
    """Wait for the gateway workers' usage consumer to write one request's record."""
    rows: list[UsageRecord] = []

    def written() -> bool:
        rows[:] = UsageRecord.objects.filter(request_id=request_id)
        return bool(rows)

    wait_until(written, timeout=timeout, interval=0.1, what=f"a usage record for {request_id}")
    assert len(rows) == 1
    return rows[0]


def max_ticks(elapsed: float, interval: float) -> int:
    """Return how many ticks' probes one scheduler can land within ``elapsed`` seconds.

    One tick per ``interval`` boundary in the window, plus the tick just
    before it, whose probes may still be on their way when the window opens.
    """
    return math.floor(elapsed / interval) + 2


def watch_probes(
    emulator: RunningEmulator,
    *,
    interval: float,
    per_tick: int,
    senders: int,
    span: float = 4.0,
    timeout: float = 20.0,
) -> int:
    """Count ``emulator``'s probes (model lists) and prove who sends them; return the count.

    ``per_tick`` probes (one per deployment on the emulator) are due each
    ``interval``, from exactly ``senders`` independent schedulers:

    - at every look, no more arrived than ``senders`` could send in the time
      watched (the one-probe-per-deployment-and-tick rate limit);
    - before ``timeout``, more arrived than ``senders - 1`` could have sent
      (so all of them probe), and at least two ticks' worth from each;
    - and the upper bound held for at least ``span`` seconds.

    Polled with a deadline rather than counted in a fixed window: a loaded
    machine may delay or skip ticks, which makes the lower bound take
    longer, never the upper bound false.
    """
    opened = time.monotonic()  # before the first read: the window can only be shorter
    start = model_list_hits(emulator)
    probes, elapsed = 0, 0.0

    def proven() -> bool:
        nonlocal probes, elapsed
        probes = model_list_hits(emulator) - start
        elapsed = time.monotonic() - opened  # after the read: an upper bound of the window
        ticks = max_ticks(elapsed, interval)
        assert probes <= senders * per_tick * ticks, (
            f"{probes} probes in {elapsed:.2f}s: more than {senders} scheduler(s) "
            f"x {per_tick} deployment(s) x {ticks} ticks"
        )
        return (
            elapsed >= span
            and probes > (senders - 1) * per_tick * ticks
            and probes >= senders * per_tick * 2
        )

    wait_until(
        proven,
        timeout=timeout,
        interval=0.1,
        what=lambda: (
            f"probes from {senders} scheduler(s) x {per_tick} deployment(s) "
            f"(saw {probes} in {elapsed:.2f}s)"
        ),
    )
    return probes
