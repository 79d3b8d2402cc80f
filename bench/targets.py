"""The servers load is sent to, started on first use by name.

A target is a server plus the URL and wrk script that load it. Each name
has a starter registered with :func:`starter`; the gateway variants that
several scenarios share are here, a target only one scenario uses is
registered in that scenario's module.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness import (
    HOST,
    REQUEST_BODY,
    BenchError,
    Service,
    free_port,
    gunicorn_workers,
    log,
    memory_of,
    post_json,
    tail,
    wait_http,
)

if TYPE_CHECKING:
    from context import Bench

CHAT_PATH = "/v1/chat/completions"
GATEWAY_APP = "xrouter_site.wsgi:application"


@dataclass(frozen=True)
class Target:
    service: Service | None  # None: not ours to measure (nothing so far)
    url: str
    script: Path  # the wrk script: method, body and this target's key

    @property
    def pids(self) -> list[int]:
        """The master, then its workers (empty without a service)."""
        if self.service is None:
            return []
        return [self.service.proc.pid, *gunicorn_workers(self.service.proc.pid)]


Starter = Callable[["Bench"], Target]
STARTERS: dict[str, Starter] = {}


def starter(name: str) -> Callable[[Starter], Starter]:
    """Register the function that starts target ``name``."""

    def register(fn: Starter) -> Starter:
        if name in STARTERS:
            raise ValueError(f"target {name!r} is registered twice")
        STARTERS[name] = fn
        return fn

    return register


def start_gunicorn(
    bench: Bench,
    name: str,
    app: str = GATEWAY_APP,
    env: dict[str, str] | None = None,
    extra: list[str] | None = None,
    config: Path | None = None,
) -> Target:
    """``app`` under gunicorn (the repo's deploy config unless ``config``),
    checked with real requests before it is handed out."""
    port = free_port()
    env = {**(bench.env if env is None else env), "XROUTER_BIND": f"{HOST}:{port}"}
    config = config or bench.app_dir / "deploy" / "gunicorn.conf.py"
    argv = [sys.executable, "-m", "gunicorn", "-c", str(config), *(extra or []), app]
    # Access lines go to a file, as a container runtime would collect them.
    service = bench.group.start(
        name,
        argv,
        env=env,
        log_path=bench.workdir / f"{name}-{port}.log",
        # SIGTERM: gunicorn's graceful stop, as in production; ProcessGroup
        # kills the group if it takes longer than its timeout.
        stop_signal=signal.SIGTERM,
    )
    probe = (
        f"http://{HOST}:{port}/healthz" if app.startswith("xrouter") else f"http://{HOST}:{port}/"
    )
    # Start-up is not what is measured: the 1,000-model catalog's first load
    # (on_starting's loadcatalog) took 79-87 s on a box at load 10.
    wait_http(probe, service, timeout=240)
    deadline = time.monotonic() + 30
    while len(gunicorn_workers(service.proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    url = f"http://{HOST}:{port}{CHAT_PATH}"
    # One real request per worker slot: proves the path works end to end
    # and warms key/route caches before anything is measured.
    for _ in range(4):
        status, body = post_json(url, REQUEST_BODY, bench.key)
        if status != 200 or b"chat.completion" not in body:
            raise BenchError(
                f"{name}: sanity request got {status}: {body[:300]!r}\n{tail(service.log_path)}"
            )
    log(f"{name} ready on {HOST}:{port} (pid {service.proc.pid})")
    return Target(service, url, bench.wrk_script)


@starter("gateway")
def _gateway(bench: Bench) -> Target:
    target = start_gunicorn(bench, "gateway")
    assert target.service is not None
    # First start only: a restart (after the access-log variant) must not
    # replace the idle figure of the first instance.
    bench.results.setdefault("memory_idle", memory_of(target.service.proc.pid).as_dict())
    return target
