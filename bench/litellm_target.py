"""LiteLLM's proxy as a benchmark target, next to the gateway in the same run.

``python bench/litellm_target.py`` is a manual check: nginx upstream, LiteLLM
in front of it, 20 requests, a 5 s wrk at 16 connections, then everything
stops. ``bench/run.py`` can use :func:`start_litellm` like its other targets.

Installation
    LiteLLM goes into its own venv (default ``bench/.litellm-venv``, which
    .gitignore lists; any other path gets a ``*`` .gitignore of its own),
    never the project's. :func:`ensure_litellm_venv` installs the pins of
    ``bench/litellm-requirements.txt`` (``litellm[proxy]==1.108.7``; see that
    file for why that version and for the extra pins) and stamps the venv with
    the file's hash, so a second call costs one ``python -c pass``.

How the proxy runs
    ``<venv>/bin/python -m litellm.proxy.proxy_cli --config <workdir>/
    litellm-config.yaml --host 127.0.0.1 --port PORT --num_workers 2``

    - The CLI's default server: uvicorn's own multiprocess supervisor, which
      spawns 2 worker processes (plus multiprocessing's resource tracker).
      LiteLLM's docs call it the recommended server; ``--run_gunicorn`` would
      run the same uvicorn workers under gunicorn's arbiter, and
      ``--run_granian`` measured the same within noise here. 2 workers match
      the gateway's 2 gunicorn workers.
    - The CLI always selects uvloop; uvicorn picks httptools because the
      requirements install it (see there: an advantage over LiteLLM's image).
    - cwd is the work dir and the environment is built from scratch, so no
      ``.env``, ``DATABASE_URL``, ``REDIS_*`` or provider key of the caller
      can reach it.

Settings, and why they are fair (or favour LiteLLM)
    - One model: ``bench/mock`` -> ``openai/gpt-mock`` at the given
      ``api_base``, as the gateway's catalog maps it. No prices on either side.
    - No database and no Redis: LiteLLM authenticates the master key by a
      string comparison in memory and keeps its rate-limit counters in
      memory, while the gateway looks its API key up (Redis and PostgreSQL).
      **This is an advantage LiteLLM gets.** Virtual keys, teams and spend
      tracking need a database in LiteLLM, so this is its cheapest setup.
    - ``disable_spend_logs`` and ``disable_error_logs``: no per-request
      writes (moot without a database, stated so it stays so).
    - No callbacks (``callbacks``, ``success_callback`` and
      ``failure_callback`` empty): no logging integrations, no Prometheus,
      no OTel exporter. LiteLLM's built-in in-process bookkeeping (router
      usage counters, parallel-request limiter, logging object) still runs:
      it cannot be turned off.
    - ``LITELLM_LOG=ERROR``: LiteLLM's loggers at ERROR and uvicorn's level at
      ``error``, which also turns uvicorn's access log off. The gateway keeps
      writing its JSON access line per request: **another advantage LiteLLM
      gets.**
    - ``LITELLM_TELEMETRY_DISABLED=true``: telemetry vetoed (it is opt-in and
      off by default in this version; the veto makes sure).
    - ``LITELLM_LOCAL_MODEL_COST_MAP=True``: the model price map comes from
      the wheel instead of a download at start-up (no internet here; start-up
      only, no per-request effect).
    - ``LITELLM_MODE=PRODUCTION`` (no ``.env`` loading), ``DISABLE_ADMIN_UI``
      and ``LITELLM_DONT_SHOW_FEEDBACK_BOX``: start-up only.
    - Everything else at LiteLLM's defaults (router, retries, timeouts,
      upstream connection pooling through its aiohttp transport).

Warm-up
    Each worker imports parts of LiteLLM lazily on its first requests, which
    are several times slower than later ones; the bench's wrk warm-up covers
    that. Each worker holds ~320 MB RSS once warm.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness import (
    HOST,
    REPO,
    REQUEST_BODY,
    BenchError,
    ProcessGroup,
    Service,
    cpu_seconds,
    ensure_tools,
    free_port,
    log,
    post_json,
    process_tree,
    run_wrk,
    start_nginx,
    tail,
    wait_http,
    write_wrk_script,
)

REQUIREMENTS = Path(__file__).resolve().parent / "litellm-requirements.txt"
# Already in the repository's .gitignore.
DEFAULT_VENV = REPO / "bench" / ".litellm-venv"
STAMP_NAME = ".bench-requirements.sha256"
WORKERS = 2
CHAT_PATH = "/v1/chat/completions"
UPSTREAM_MODEL = "openai/gpt-mock"
UPSTREAM_API_KEY = "sk-bench-upstream"  # nginx ignores it; LiteLLM wants one


def _requirements_hash() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def ensure_litellm_venv(path: Path = DEFAULT_VENV) -> Path:
    """Create ``path`` as a venv with the pinned LiteLLM; return its python.

    Idempotent: a stamp holding the hash of the requirements file marks a
    finished install, so later calls only check that the python runs. A
    changed requirements file is installed over the existing venv.
    """
    python = path / "bin" / "python"
    stamp = path / STAMP_NAME
    wanted = _requirements_hash()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        probe = subprocess.run([str(python), "-c", "pass"], capture_output=True, check=False)
        if probe.returncode == 0:
            return python
    if not python.exists():
        log(f"creating the LiteLLM venv at {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        created = subprocess.run(
            [sys.executable, "-m", "venv", str(path)], capture_output=True, text=True, check=False
        )
        if created.returncode != 0:
            raise BenchError(f"python -m venv {path} failed:\n{created.stderr[-2000:]}")
        # ~760 MB that must never be committed, wherever the venv is put.
        (path / ".gitignore").write_text("*\n")
    log(f"installing {REQUIREMENTS.name} into {path} (a minute or two the first time)")
    installed = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--requirement",
            str(REQUIREMENTS),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if installed.returncode != 0:
        raise BenchError(f"pip install into {path} failed:\n{installed.stderr[-3000:]}")
    stamp.write_text(wanted + "\n")
    return python


def litellm_config(upstream_base_url: str, master_key: str) -> str:
    """The proxy's config.yaml. Values are JSON strings, which YAML reads as
    double-quoted scalars, so a key with any character stays one value."""

    def q(value: str) -> str:
        return json.dumps(value)

    return f"""# generated by bench/litellm_target.py
model_list:
  - model_name: {q(str(REQUEST_BODY["model"]))}
    litellm_params:
      model: {q(UPSTREAM_MODEL)}
      api_base: {q(upstream_base_url)}
      api_key: {q(UPSTREAM_API_KEY)}
litellm_settings:
  set_verbose: false
  json_logs: false
  callbacks: []
  success_callback: []
  failure_callback: []
general_settings:
  master_key: {q(master_key)}
  disable_spend_logs: true
  disable_error_logs: true
"""


def litellm_env(venv_python: Path) -> dict[str, str]:
    """A from-scratch environment: nothing of the caller's (database or Redis
    URLs, provider keys, LITELLM_* settings) reaches the proxy."""
    env = {
        "PATH": f"{venv_python.parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "LITELLM_LOG": "ERROR",
        "LITELLM_MODE": "PRODUCTION",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY_DISABLED": "true",
        "DISABLE_ADMIN_UI": "True",
        "LITELLM_DONT_SHOW_FEEDBACK_BOX": "true",
    }
    if "TMPDIR" in os.environ:
        env["TMPDIR"] = os.environ["TMPDIR"]
    return env


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def litellm_workers(service: Service) -> list[int]:
    """The worker processes: every child of the supervisor except
    multiprocessing's resource tracker (which serves no request)."""
    return [
        pid for pid in process_tree(service.proc.pid)[1:] if "resource_tracker" not in _cmdline(pid)
    ]


def _wait_workers_ready(service: Service, workers: int, timeout: float) -> None:
    """The first worker answers the health probe while the others may still
    be importing LiteLLM: wait for all of them to exist and go idle."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            raise BenchError(
                f"{service.name} exited with {service.proc.returncode}:\n{tail(service.log_path)}"
            )
        if len(litellm_workers(service)) >= workers:
            pids = process_tree(service.proc.pid)
            before = cpu_seconds(pids)
            time.sleep(0.5)
            if (cpu_seconds(pids) - before) / 0.5 < 0.05:
                return
        else:
            time.sleep(0.5)
    raise BenchError(
        f"{service.name}: {len(litellm_workers(service))} of {workers} workers idle after "
        f"{timeout:.0f}s:\n{tail(service.log_path)}"
    )


def start_litellm(
    group: ProcessGroup,
    workdir: Path,
    upstream_base_url: str,
    master_key: str,
    port: int,
    *,
    venv: Path = DEFAULT_VENV,
    workers: int = WORKERS,
) -> tuple[Service, str]:
    """Start LiteLLM's proxy on 127.0.0.1:``port`` in front of
    ``upstream_base_url`` (e.g. ``http://127.0.0.1:PORT/v1``), with
    ``master_key`` as its only key; check one chat completion through it and
    return the service and its chat-completions URL."""
    python = ensure_litellm_venv(venv)
    config = workdir / "litellm-config.yaml"
    config.write_text(litellm_config(upstream_base_url, master_key))
    argv = [
        str(python),
        "-m",
        "litellm.proxy.proxy_cli",
        "--config",
        str(config),
        "--host",
        HOST,
        "--port",
        str(port),
        "--num_workers",
        str(workers),
    ]
    log(f"starting LiteLLM: {' '.join(argv)}")
    service = group.start(
        "litellm",
        argv,
        env=litellm_env(python),
        log_path=workdir / f"litellm-{port}.log",
        # uvicorn's supervisor stops its workers gracefully on SIGTERM.
        stop_signal=signal.SIGTERM,
        cwd=workdir,
    )
    base = f"http://{HOST}:{port}"
    # Importing LiteLLM takes ~10 s per process on an idle machine, more when
    # the two cores are shared.
    wait_http(f"{base}/health/liveliness", service, timeout=180)
    _wait_workers_ready(service, workers, timeout=120)
    chat_url = f"{base}{CHAT_PATH}"
    status, body = post_json(chat_url, REQUEST_BODY, master_key, timeout=30)
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if status != 200 or not isinstance(parsed, dict) or parsed.get("object") != "chat.completion":
        raise BenchError(
            f"LiteLLM check request: HTTP {status}: {body[:500]!r}\n{tail(service.log_path)}"
        )
    log(f"LiteLLM ready on {base} with {len(litellm_workers(service))} workers")
    return service, chat_url


def _main() -> int:
    """Manual check: nginx, LiteLLM, 20 requests, 5 s of wrk at 16 connections."""
    import tempfile

    tools = ensure_tools(need_py_spy=False)
    workdir = Path(tempfile.mkdtemp(prefix="litellm-target-"))
    group = ProcessGroup()
    master_key = "sk-bench-" + os.urandom(12).hex()
    try:
        _, nginx_port = start_nginx(group, workdir, tools["nginx"])
        service, url = start_litellm(
            group, workdir, f"http://{HOST}:{nginx_port}/v1", master_key, free_port()
        )
        failures = 0
        started = time.monotonic()
        for _ in range(20):
            status, body = post_json(url, REQUEST_BODY, master_key)
            failures += status != 200 or b'"chat.completion"' not in body
        log(f"20 requests, {failures} failed, {time.monotonic() - started:.2f}s")
        script = workdir / "post.lua"
        write_wrk_script(script, master_key)
        result = run_wrk(tools["wrk"], url, script, connections=16, threads=2, seconds=5)
        workers = litellm_workers(service)
        print(
            json.dumps(
                {
                    "litellm_workers": len(workers),
                    "requests": result.requests,
                    "rps": result.rps,
                    "errors": result.errors,
                    "latency_ms": result.latency_ms,
                    "check_failures": failures,
                },
                indent=2,
            )
        )
        return 1 if failures or result.errors else 0
    except BenchError as exc:
        log(str(exc))
        return 1
    finally:
        group.stop_all()
        if os.environ.get("KEEP_WORKDIR") == "1":
            log(f"logs and config kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(_main())
