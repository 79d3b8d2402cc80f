"""Run the gateway under gunicorn, with emulators when nothing is configured.

With ``XROUTER_CATALOG`` set, this serves that catalog. Without it there are
no provider credentials to use, so the command starts the built-in provider
emulators, writes a demo catalog pointing at them, makes sure a demo API key
exists, and says so loudly. With ``CELERY_BROKER_URL`` set it also runs a
Celery worker and beat beside gunicorn.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Membership
from accounts.services import team_get_or_create
from keys import tokens
from keys.models import ApiKey
from keys.services import api_key_create

#: The team of the demo key; the first account signed up joins it as owner
#: (XROUTER_DEMO_TEAM, accounts.services.user_signup).
DEMO_TEAM_SLUG = "demo"
# Emulator kind -> the demo catalog's provider entry for it. Each emulator
# listens on its own port; the adapters talk to it exactly as to the real
# provider (OAuth, IAM folders and all).
DEMO_EMULATORS: dict[str, str] = {
    "openai": """
  - name: demo-openai
    kind: openai
    base_url: http://127.0.0.1:{port}/v1
    api_key_env: XROUTER_DEMO_UPSTREAM_KEY
""",
    "gigachat": """
  - name: gigachat
    kind: gigachat
    base_url: http://127.0.0.1:{port}/api/v1
    api_key_env: XROUTER_DEMO_GIGACHAT_KEY
    options:
      scope: GIGACHAT_API_PERS
      auth_url: http://127.0.0.1:{port}/api/v2/oauth
""",
    "yandexgpt": """
  - name: yandex
    kind: yandexgpt
    base_url: http://127.0.0.1:{port}
    api_key_env: XROUTER_DEMO_UPSTREAM_KEY
    options:
      folder_id: b1gemulatorfolder
      auth: api_key
""",
}
DEMO_MODELS = """
models:
  - id: gigachat/gigachat-2
    name: GigaChat 2 Lite (emulated)
    provider: gigachat
    upstream: GigaChat-2
    context_length: 131072
    pricing: {prompt: 0.2, completion: 0.2}
    fallbacks: [yandex/yandexgpt-lite]
  - id: gigachat/gigachat-2-max
    name: GigaChat 2 Max (emulated)
    provider: gigachat
    upstream: GigaChat-2-Max
    context_length: 131072
    pricing: {prompt: 1.95, completion: 1.95}
  - id: gigachat/embeddings
    name: GigaChat Embeddings (emulated)
    type: embedding
    provider: gigachat
    upstream: Embeddings
    pricing: {prompt: 0.04}
  - id: yandex/yandexgpt
    name: YandexGPT Pro (emulated)
    provider: yandex
    upstream: yandexgpt
    context_length: 32768
    pricing: {prompt: 1.2, completion: 1.2}
    versions:
      latest: {}
      rc: {}
      # Dates make :deprecated answer with Deprecation and Sunset, not
      # only Warning, as the README promises.
      deprecated: {since: 2025-02-09, until: 2027-06-30}
  - id: yandex/yandexgpt-lite
    name: YandexGPT Lite (emulated)
    provider: yandex
    upstream: yandexgpt-lite
    context_length: 32768
    pricing: {prompt: 0.2, completion: 0.2}
    fallbacks: [gigachat/gigachat-2]
  - id: demo/gpt-mock
    name: Demo chat model (emulated OpenAI-compatible upstream)
    provider: demo-openai
    upstream: gpt-mock
    context_length: 32768
    pricing: {prompt: 0.1, completion: 0.2}
  - id: demo/embedding-mock
    name: Demo embedding model (emulated)
    type: embedding
    provider: demo-openai
    upstream: text-embedding-mock
    pricing: {prompt: 0.01}
"""


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with code {process.returncode}")
        try:
            if requests.get(url, timeout=0.5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become healthy in {timeout:.0f}s")


class Command(BaseCommand):
    help = "Serve the gateway with gunicorn (gevent); start emulators if unconfigured."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default=os.environ.get("XROUTER_BIND", "127.0.0.1:8000"))
        parser.add_argument("--emulator-port", type=int, default=18080)

    def handle(self, *args: Any, **options: Any) -> None:
        self.children: list[subprocess.Popen[bytes]] = []
        env = os.environ.copy()
        env["XROUTER_BIND"] = options["bind"]
        # The arbiter's own lines (booting, listening...) say nothing the
        # banner does not; its warnings and errors still show.
        env.setdefault("GUNICORN_LOG_LEVEL", "warning")
        ready_dir = Path(tempfile.mkdtemp(prefix="xrouter-ready-"))
        env["XROUTER_READY_DIR"] = str(ready_dir)
        demo_key = None
        # Ctrl-C reaches only this process (the children run in sessions of
        # their own): it stops them with SIGTERM, gracefully and quietly,
        # instead of each child printing its own KeyboardInterrupt.
        signal.signal(signal.SIGTERM, _interrupt)
        code = 0
        try:
            if not settings.XROUTER_CATALOG:
                catalog_path = self._start_emulators(options["emulator_port"], env)
                env["XROUTER_CATALOG"] = str(catalog_path)
                env.setdefault("XROUTER_DEMO_TEAM", DEMO_TEAM_SLUG)
                demo_key = self._demo_key()
            if settings.CELERY_BROKER_URL:
                self._start_celery(env)
            else:
                # No beat without a broker: gunicorn workers run the schedule.
                env.setdefault("XROUTER_INPROCESS_SCHEDULER", "true")
            gunicorn = self._spawn(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "-c",
                    str(settings.BASE_DIR / "deploy" / "gunicorn.conf.py"),
                    "xrouter_site.wsgi:application",
                ],
                env,
            )
            _wait_healthy(f"http://{options['bind']}/healthz", gunicorn, timeout=60)
            # Every worker has started (and logged) before the banner, so the
            # banner is the last thing on the screen until requests arrive.
            workers = int(env.get("WEB_CONCURRENCY", "2"))
            _wait_ready(ready_dir, workers, gunicorn, timeout=60)
            self._banner(options["bind"], demo_key)
            code = gunicorn.wait()
        except KeyboardInterrupt:
            # A second Ctrl-C while stopping kills whatever is left.
            signal.signal(signal.SIGINT, lambda *_: self._kill_children())
            signal.signal(signal.SIGTERM, lambda *_: self._kill_children())
            self.stderr.write("Stopping XRouter...")
        finally:
            self._stop_children()
            shutil.rmtree(ready_dir, ignore_errors=True)
        if code:
            raise CommandError(f"gunicorn exited with status {code}", returncode=code)
        self.stderr.write("XRouter stopped.")

    def _spawn(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(argv, cwd=settings.BASE_DIR, env=env, start_new_session=True)
        self.children.append(process)
        return process

    def _start_emulators(self, base_port: int, env: dict[str, str]) -> Path:
        providers = []
        for offset, (kind, entry) in enumerate(DEMO_EMULATORS.items()):
            port = base_port + offset
            process = self._spawn(
                [sys.executable, "-m", "providers.emulators", kind, "--port", str(port)], env
            )
            _wait_healthy(f"http://127.0.0.1:{port}/_emulator/health", process)
            providers.append(entry.format(port=port))
        # The emulators listen on loopback, which the outbound policy allows
        # only when told to (providers.outbound); this demo tells it.
        env.setdefault("XROUTER_OUTBOUND_ALLOW_LOOPBACK", "true")
        # Emulators accept any credential; a random one proves it is passed.
        env.setdefault("XROUTER_DEMO_UPSTREAM_KEY", secrets.token_urlsafe(16))
        # GigaChat's authorization key is base64 of "client_id:client_secret".
        env.setdefault(
            "XROUTER_DEMO_GIGACHAT_KEY",
            base64.b64encode(f"demo:{secrets.token_urlsafe(12)}".encode()).decode(),
        )
        for name in ("XROUTER_DEMO_UPSTREAM_KEY", "XROUTER_DEMO_GIGACHAT_KEY"):
            os.environ[name] = env[name]
        catalog = settings.VAR_DIR / "demo-catalog.yaml"
        catalog.parent.mkdir(parents=True, exist_ok=True)
        catalog.write_text(
            "# Written by `manage.py serve` for the emulated demo; do not edit.\n"
            "providers:" + "".join(providers) + DEMO_MODELS,
            encoding="utf-8",
        )
        return catalog

    def _demo_key(self) -> str:
        """Return the demo key, creating it once and keeping it in var/."""
        path = settings.VAR_DIR / "demo-api-key"
        if path.exists():
            plaintext = path.read_text(encoding="utf-8").strip()
            if tokens.is_well_formed(plaintext):
                key = ApiKey.objects.filter(key_hash=tokens.digest(plaintext)).first()
                if key is not None and key.is_usable():
                    return plaintext
        team, _created = team_get_or_create(slug=DEMO_TEAM_SLUG, name="Demo team")
        created = api_key_create(team=team, name="demo key (make run)")
        path.write_text(created.plaintext + "\n", encoding="utf-8")
        path.chmod(0o600)
        return created.plaintext

    def _start_celery(self, env: dict[str, str]) -> None:
        schedule = str(settings.VAR_DIR / "celerybeat-schedule")
        for argv in (
            ["worker", "--loglevel", "WARNING", "--concurrency", "2"],
            ["beat", "--loglevel", "WARNING", "--schedule", schedule],
        ):
            self._spawn(
                [sys.executable, "-m", "celery", "-A", "xrouter_site", "--quiet", *argv], env
            )

    def _banner(self, bind: str, demo_key: str | None) -> None:
        line = "=" * 72
        url = f"http://{bind}"
        out = ["", line, f"  XRouter is serving on {url}  (Ctrl-C stops it)", ""]
        out += [f"  Dashboard {url}/   API {url}/v1/"]
        if demo_key:
            out += [
                "",
                "  !!! PROVIDERS ARE EMULATED: no XROUTER_CATALOG was given, so this",
                "  !!! gateway answers from the built-in emulators of GigaChat,",
                "  !!! YandexGPT and an OpenAI-compatible upstream, not the real",
                "  !!! services. Set XROUTER_CATALOG (see README) for real providers.",
                "",
                "  Models: gigachat/gigachat-2, gigachat/gigachat-2-max, yandex/yandexgpt",
                "  (:latest, :rc, :deprecated), yandex/yandexgpt-lite, demo/gpt-mock,",
                "  embeddings: gigachat/embeddings, demo/embedding-mock",
                "",
                f"  Demo API key: {demo_key}",
                f"  (kept in {settings.VAR_DIR / 'demo-api-key'})",
                "",
                f"  curl {url}/v1/chat/completions \\",
                f"    -H 'Authorization: Bearer {demo_key}' \\",
                "    -H 'Content-Type: application/json' \\",
                '    -d \'{"model": "gigachat/gigachat-2", "messages": [{"role": "user", '
                '"content": "Привет"}]}\'',
                "",
                *self._sign_in_lines(url),
            ]
        else:
            out += ["", f"  Sign in: {url}/accounts/login/  (new account: {url}/accounts/signup/)"]
        out.append(line)
        self.stderr.write("\n".join(out))

    def _sign_in_lines(self, url: str) -> list[str]:
        """Say how to reach the demo key's team on the dashboard."""
        owner = (
            Membership.objects.filter(team__slug=DEMO_TEAM_SLUG, role=Membership.Role.OWNER)
            .select_related("user")
            .order_by("pk")
            .first()
        )
        if owner is None:
            return [
                f"  Sign up at {url}/accounts/signup/",
                "  The next account signed up there becomes the owner of the demo",
                "  team: its dashboard shows this key, its usage and its requests.",
            ]
        return [
            f"  Sign in at {url}/accounts/login/ as {owner.user.get_username()!r}",
            "  (the owner of the demo team: this key, its usage and its requests).",
        ]

    def _kill_children(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()

    def _stop_children(self) -> None:
        # Newest first, each one gone before the next: the gateway stops
        # before the emulators it probes, so nothing logs them as down.
        deadline = time.monotonic() + 20
        for child in reversed(self.children):
            if child.poll() is None:
                child.terminate()
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def _interrupt(signum: int, frame: object) -> None:
    """Turn SIGTERM into the same quiet stop as Ctrl-C."""
    raise KeyboardInterrupt


def _wait_ready(
    ready_dir: Path, workers: int, process: subprocess.Popen[bytes], timeout: float
) -> None:
    """Wait until ``workers`` gunicorn workers have finished starting.

    Each worker touches a file in ``ready_dir`` at the end of its start-up
    (``post_worker_init`` in deploy/gunicorn.conf.py).
    """
    deadline = time.monotonic() + timeout
    while len(list(ready_dir.iterdir())) < workers:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with code {process.returncode}")
        if time.monotonic() > deadline:
            return  # serve anyway; the banner only comes a little early
        time.sleep(0.1)
