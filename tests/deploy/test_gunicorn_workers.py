"""The gunicorn worker class and hooks of deploy/gunicorn.conf.py (issue 19).

Each check runs in a fresh process: what the arbiter imports, and the
psycopg2 wait callback, are process-wide.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Load the deploy config as gunicorn does, build the arbiter's worker
# object, then run the child's start-up up to the real worker's own.
ARBITER_THEN_CHILD = """
import json, sys
from gunicorn.config import Config
cfg = Config()
cfg.set("config", "deploy/gunicorn.conf.py")
namespace = {"__file__": "deploy/gunicorn.conf.py", "__name__": "__config__"}
exec(compile(open("deploy/gunicorn.conf.py").read(), "deploy/gunicorn.conf.py", "exec"), namespace)
for name, value in namespace.items():
    if name in cfg.settings:
        cfg.set(name, value)
worker_class = cfg.worker_class
worker = worker_class(0, 1, [], None, 30, cfg, None)
arbiter = {"class": type(worker).__name__, "gevent": "gevent" in sys.modules}
from deploy.gunicorn_worker import XRouterGeventWorker
from gunicorn.workers.ggevent import GeventWorker
seen = {}
def real_start(self):
    seen["class"] = type(self).__name__
    seen["header_timeout"] = self.header_timeout
    seen["max_per_ip"] = self.max_per_ip
    seen["worker_connections"] = self.worker_connections
    seen["same_heartbeat"] = self.tmp is heartbeat
heartbeat = worker.tmp
GeventWorker.init_process = real_start
worker.init_process()
worker.tmp.close()
print(json.dumps({"arbiter": arbiter, "child": seen}))
"""

# Run post_worker_init for a gevent and a gthread worker object; report
# whether psycopg2 got gevent's wait callback.
PSYCOPG_PATCH = """
import json, sys, django
django.setup()
import psycopg2.extensions
namespace = {"__file__": "deploy/gunicorn.conf.py", "__name__": "__config__"}
exec(compile(open("deploy/gunicorn.conf.py").read(), "deploy/gunicorn.conf.py", "exec"), namespace)
if sys.argv[1] == "gevent":
    from deploy.gunicorn_worker import XRouterGeventWorker as cls
else:
    from gunicorn.workers.gthread import ThreadWorker as cls
namespace["post_worker_init"](cls.__new__(cls))
print(json.dumps(psycopg2.extensions.get_wait_callback() is not None))
"""


def _run(code: str, tmp_path: Path, *argv: str) -> object:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "XROUTER_HEADER_TIMEOUT": "7",
        "XROUTER_MAX_CONNECTIONS_PER_IP": "33",
        "XROUTER_WORKER_CONNECTIONS": "123",
    }
    env.pop("XROUTER_INPROCESS_SCHEDULER", None)
    env.pop("XROUTER_READY_DIR", None)
    out = subprocess.run(
        [sys.executable, "-c", code, *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_arbiter_imports_no_gevent_and_the_child_becomes_the_real_worker(tmp_path: Path) -> None:
    result = _run(ARBITER_THEN_CHILD, tmp_path)
    assert result == {
        "arbiter": {"class": "LazyGeventWorker", "gevent": False},
        "child": {
            "class": "XRouterGeventWorker",
            "header_timeout": 7.0,
            "max_per_ip": 33,
            "worker_connections": 123,
            "same_heartbeat": True,
        },
    }


def test_gevent_workers_get_the_psycopg2_wait_callback_and_gthread_ones_do_not(
    tmp_path: Path,
) -> None:
    assert _run(PSYCOPG_PATCH, tmp_path, "gevent") is True
    assert _run(PSYCOPG_PATCH, tmp_path, "gthread") is False
