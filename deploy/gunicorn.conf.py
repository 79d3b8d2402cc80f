"""Gunicorn settings for XRouter: gevent workers serving plain Django views.

gevent lets one worker hold thousands of slow upstream calls and SSE streams
at once while the views stay ordinary blocking code; measured on 2 cores a
bare proxy view served ~5x the requests of Django under ASGI (see
bench/RESULTS.md). Everything here can be overridden by environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent

bind = os.environ.get("XROUTER_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# gunicorn's gevent worker plus a header-read deadline and a per-address
# connection cap against slowloris (deploy/gunicorn_worker.py), named through
# a stand-in that keeps gevent out of the arbiter (5.4 MB of its RSS; it
# becomes that worker after the fork, deploy/gunicorn_lazy_worker.py).
worker_class = "deploy.gunicorn_lazy_worker.LazyGeventWorker"
# Concurrent connections per worker (streams included).
worker_connections = int(os.environ.get("XROUTER_WORKER_CONNECTIONS", "4000"))
backlog = 2048
# gevent workers heartbeat from their own greenlet, so a long stream does not
# count against this; it only catches a worker whose loop is stuck.
timeout = int(os.environ.get("XROUTER_WORKER_TIMEOUT", "60"))
# On SIGTERM a worker stops accepting and lets streams finish this long.
graceful_timeout = int(os.environ.get("XROUTER_GRACEFUL_TIMEOUT", "120"))
# Idle keep-alive wait; the worker also caps it, with the header read, at
# XROUTER_HEADER_TIMEOUT. A proxy in front must close idle upstream
# connections sooner (deploy/nginx/xrouter.conf).
keepalive = int(os.environ.get("XROUTER_KEEPALIVE_SECONDS", "75"))
# The gateway writes its own JSON access line; gunicorn's would duplicate it
# and could include query strings.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
proc_name = "xrouter"
# Header size limits stay at gunicorn's defaults (8 KiB line, 100 fields);
# bodies are capped by the gateway (XROUTER_MAX_BODY_BYTES -> 413).
raw_env = [
    f"DJANGO_SETTINGS_MODULE={os.environ.get('DJANGO_SETTINGS_MODULE', 'xrouter_site.settings')}"
]
chdir = str(BASE_DIR)

# Prometheus multiprocess mode: each worker writes its samples to files in
# this directory and /metrics merges them, so a scrape counts every worker.
# prometheus_client reads the variable when it is imported (with Django, in
# each worker), so it is set here in the arbiter and inherited on fork.
_OWN_METRICS_DIR = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _OWN_METRICS_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="xrouter-prometheus-")


def on_starting(server: Any) -> None:
    """Load the declarative catalog once, before workers start.

    It runs in a child process so the arbiter never imports Django, requests
    or ssl before the workers' gevent monkey-patching.
    """
    _clean_metrics_dir()
    # A drain flag left by the previous container of this pod (same /tmp
    # volume) would keep the new one unready forever.
    drain_file = os.environ.get("XROUTER_DRAIN_FILE")
    if drain_file:
        Path(drain_file).unlink(missing_ok=True)
    if os.environ.get("XROUTER_CATALOG"):
        subprocess.run([sys.executable, str(BASE_DIR / "manage.py"), "loadcatalog"], check=True)


def post_worker_init(worker: Any) -> None:
    # psycopg2 is C code: without this its socket waits would block the
    # whole worker instead of yielding to other greenlets. Only for gevent
    # workers: bench/run.py's `workers` scenario also runs gthread.
    # The class's MRO, not its module: deploy.gunicorn_worker's name has no
    # "gevent" in it, and checking the module left psycopg2 unpatched there.
    if _is_gevent_worker(worker):
        from psycogreen.gevent import patch_psycopg

        patch_psycopg()
    # Without a broker there is no beat: run its schedule in this worker
    # (xrouter_site.scheduler; a no-op unless XROUTER_INPROCESS_SCHEDULER is on).
    from xrouter_site.scheduler import scheduler_start

    scheduler_start()
    # `manage.py serve` prints its banner once every worker got here.
    ready_dir = os.environ.get("XROUTER_READY_DIR")
    if ready_dir:
        Path(ready_dir, str(os.getpid())).touch()


def _is_gevent_worker(worker: Any) -> bool:
    return any(c.__module__.startswith("gunicorn.workers.ggevent") for c in type(worker).__mro__)


def _clean_metrics_dir() -> None:
    """Empty the Prometheus directory: samples of a previous run must not count."""
    path = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges (prometheus_client's mark_process_dead).

    Done by hand rather than by importing prometheus_client: that imports
    ssl into the arbiter, and workers forked later would then be
    monkey-patched by gevent after ssl was loaded.
    """
    path = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    for stale in path.glob(f"gauge_live*_{worker.pid}.db"):
        stale.unlink(missing_ok=True)


def on_exit(server: Any) -> None:
    """Remove the metrics directory this arbiter created for itself."""
    if _OWN_METRICS_DIR:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
