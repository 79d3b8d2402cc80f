"""Gunicorn settings for the bare proxy: the repo's server settings, no hooks.

The repo config (deploy/gunicorn.conf.py) is executed and only its server
settings are copied, so the baseline runs under exactly the same workers,
worker class, connection limits and keep-alive as the gateway. Its hooks
(catalog loading, psycopg patching, the in-process scheduler, metrics
clean-up) are left out: they import Django, and the baseline must measure
a proxy without Django.
"""

from __future__ import annotations

import os
import runpy
from pathlib import Path
from typing import Any

_REPO_CONFIG: dict[str, Any] = runpy.run_path(
    str(Path(__file__).resolve().parent.parent / "deploy" / "gunicorn.conf.py")
)
_SERVER_SETTINGS = (
    "bind",
    "workers",
    "worker_class",
    "worker_connections",
    "backlog",
    "timeout",
    "graceful_timeout",
    "keepalive",
    "accesslog",
    "errorlog",
    "loglevel",
)
globals().update({name: _REPO_CONFIG[name] for name in _SERVER_SETTINGS if name in _REPO_CONFIG})
proc_name = "xrouter-bare"
# Same worker as the gateway; its clients are all 127.0.0.1, so no per-address cap.
os.environ.setdefault("XROUTER_MAX_CONNECTIONS_PER_IP", "0")
