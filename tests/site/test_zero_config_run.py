"""`manage.py serve` (what `make run` runs) on a machine with nothing set up."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import requests

from tests.gateway_process import free_port
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _free_run(count: int) -> int:
    """Return a port with ``count`` free ports from it on."""
    for _ in range(50):
        base = free_port()
        try:
            for port in range(base, base + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no run of free ports")


# Five processes start and stop in turn: on a loaded 2-core machine that
# alone can use most of the default 120 s.
@pytest.mark.timeout(300)
def test_zero_config_serve_emulates_every_provider_and_says_so(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "DATABASE_URL",
            "REDIS_URL",
            "CELERY_BROKER_URL",
            "XROUTER_CATALOG",
            "DJANGO_SETTINGS_MODULE",
            "PROMETHEUS_MULTIPROC_DIR",
        }
    }
    env.update(XROUTER_VAR_DIR=str(tmp_path), DEBUG="true", PYTHONUNBUFFERED="1")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True)
    port, emulators = free_port(), _free_run(3)
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "serve",
                "--bind",
                f"127.0.0.1:{port}",
                "--emulator-port",
                str(emulators),
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def banner_printed() -> bool:
            assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
            return "Demo API key" in log_path.read_text(errors="replace")

        wait_until(banner_printed, timeout=60, interval=0.2, what="the demo banner")
        banner = log_path.read_text(errors="replace")
        assert "PROVIDERS ARE EMULATED" in banner
        key = re.search(r"Demo API key: (xr_live_\w+)", banner).group(1)  # type: ignore[union-attr]
        # The banner closes the start-up: every worker has logged its start
        # before it, and the start-up is a handful of lines, not a hundred.
        startup, _banner, after = banner.rpartition("=" * 72 + "\n")
        assert "Sign up at" in _banner + startup
        assert startup.count("in-process scheduler started") == 2, startup
        assert len(startup.splitlines()) < 45, startup
        assert after == "", after
        assert "kombu" not in banner and "Booting worker" not in banner
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        models = requests.get(f"http://127.0.0.1:{port}/v1/models", headers=headers, timeout=10)
        assert models.status_code == 200, models.text
        assert "gigachat/gigachat-2" in {m["id"] for m in models.json()["data"]}
        served = {}
        for model in ("gigachat/gigachat-2", "yandex/yandexgpt:rc", "demo/gpt-mock"):
            response = requests.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                headers=headers,
                timeout=10,
                data=orjson.dumps(
                    {"model": model, "messages": [{"role": "user", "content": "Привет"}]}
                ),
            )
            assert response.status_code == 200, response.text
            assert response.json()["choices"][0]["message"]["content"].endswith("Привет")
            served[model] = response.headers["x-xrouter-provider"]
        assert served == {
            "gigachat/gigachat-2": "gigachat",
            "yandex/yandexgpt:rc": "yandex",
            "demo/gpt-mock": "demo-openai",
        }
        # The same key survives a restart: it is kept in var/.
        assert (tmp_path / "demo-api-key").read_text().strip() == key
        assert (tmp_path / "xrouter.sqlite3").exists()
    finally:
        # Ctrl-C in a terminal signals the whole foreground process group.
        os.killpg(process.pid, signal.SIGINT)
        try:
            returncode = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
    output = log_path.read_text(errors="replace")
    # A quiet stop: status 0, no traceback (gevent's SystemExit, a child's
    # KeyboardInterrupt), no warning printed on the way out.
    assert returncode == 0, output[-3000:]
    assert "Traceback" not in output and "SystemExit" not in output, output[-3000:]
    assert output.rstrip().endswith("XRouter stopped."), output[-1000:]
    assert '"level":"WARNING"' not in output and '"level":"ERROR"' not in output
    # Nothing it started is left listening.
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{emulators}/_emulator/health", timeout=1)
