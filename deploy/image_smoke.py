"""Smoke test run inside the built image (`make image` runs it with buildah run).

Checks what the Containerfile promises, then serves the gateway with its
emulated providers on loopback and makes real calls through it:
  - the process is not root and cannot write the application or the venv;
  - tini is there to be PID 1;
  - GET /healthz answers 200;
  - one chat completion through the emulated GigaChat answers 200 with a
    message and usage;
  - SIGTERM stops the gateway within its grace period (XROUTER_GRACEFUL_TIMEOUT).

    python deploy/image_smoke.py --port 27000 --emulator-port 27080

Exits non-zero, saying which promise broke, on the first failure.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

APP = Path(__file__).resolve().parent.parent
GRACE_SECONDS = 20


def fail(message: str) -> None:
    print(f"image smoke: FAIL: {message}", file=sys.stderr)
    raise SystemExit(1)


def check_filesystem() -> None:
    if os.getuid() == 0:
        fail("running as root; the image must set a non-root USER")
    for path in (APP, Path(sys.prefix)):
        if os.access(path, os.W_OK):
            fail(f"{path} is writable by uid {os.getuid()}")
    if not os.access("/usr/bin/tini", os.X_OK):
        fail("/usr/bin/tini is missing")
    print(f"image smoke: uid {os.getuid()}, {APP} and {sys.prefix} read-only for it, tini present")


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if process.poll() is not None:
            fail(f"the gateway exited with code {process.returncode} before {url} answered")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return time.monotonic() - start
        except requests.RequestException:
            pass
        time.sleep(0.2)
    fail(f"{url} did not answer 200 within {timeout:.0f}s")
    raise AssertionError("unreachable")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=27000)
    parser.add_argument("--emulator-port", type=int, default=27080)
    args = parser.parse_args()
    check_filesystem()

    var_dir = Path(tempfile.mkdtemp(prefix="xrouter-smoke-"))
    env = {
        **os.environ,
        "XROUTER_VAR_DIR": str(var_dir),
        "DATABASE_URL": f"sqlite:///{var_dir}/smoke.sqlite3",
        "DEBUG": "false",
        "SECRET_KEY": "image-smoke-" + os.urandom(16).hex(),
        "SECURE_SSL_REDIRECT": "false",
        "WEB_CONCURRENCY": "1",
        # SIGTERM must stop the gateway within its grace period.
        "XROUTER_GRACEFUL_TIMEOUT": str(GRACE_SECONDS),
    }
    env.pop("REDIS_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    manage = [sys.executable, str(APP / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=env, check=True, cwd=APP)
    bind = f"127.0.0.1:{args.port}"
    serve = subprocess.Popen(
        [*manage, "serve", "--bind", bind, "--emulator-port", str(args.emulator_port)],
        env=env,
        cwd=APP,
    )
    try:
        took = wait_healthy(f"http://{bind}/healthz", serve, timeout=90)
        print(f"image smoke: /healthz 200 after {took:.1f}s")
        key = (var_dir / "demo-api-key").read_text(encoding="utf-8").strip()
        response = requests.post(
            f"http://{bind}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={
                "model": "gigachat/gigachat-2",
                "messages": [{"role": "user", "content": "Привет"}],
            },
            timeout=30,
        )
        if response.status_code != 200:
            fail(f"chat completion answered {response.status_code}: {response.text[:300]}")
        body = response.json()
        content = body["choices"][0]["message"]["content"]
        if not content or body.get("usage", {}).get("total_tokens", 0) <= 0:
            fail(f"chat completion has no content or no usage: {body}")
        provider = response.headers.get("x-xrouter-provider")
        print(f"image smoke: chat 200 from {provider}, {body['usage']['total_tokens']} tokens")
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            stopping = time.monotonic()
            code = serve.wait(timeout=GRACE_SECONDS + 15)
        except subprocess.TimeoutExpired:
            serve.kill()
            fail(f"the gateway did not stop within {GRACE_SECONDS + 15}s of SIGTERM")
        print(f"image smoke: stopped {time.monotonic() - stopping:.1f}s after SIGTERM")
    if code not in (0, -signal.SIGTERM):
        fail(f"the gateway exited with code {code} after SIGTERM")
    print("image smoke: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
