"""Secrets at start-up (issue 15, Medium 10 and 11).

- DEBUG off and no SECRET_KEY: the web entry points refuse to start and
  the error names SECRET_KEY (the placeholder is public, so sessions and
  reset links signed with it could be forged).
- Password-reset mails hold live tokens: printed to stderr only in DEBUG;
  otherwise dropped with a warning that holds neither link nor address.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

RESET_PROBE = """
import django
django.setup()
from django.conf import settings
from django.core.management import call_command
from django.test import Client
call_command("migrate", verbosity=0)
from accounts.models import User
User.objects.create_user("dana", "dana@example.com", "correct horse battery staple 42")
print("BACKEND", settings.EMAIL_BACKEND, flush=True)
client = Client(HTTP_HOST="127.0.0.1")
response = client.post("/accounts/password/reset/", {"email": "dana@example.com"})
print("STATUS", response.status_code, response["Location"], flush=True)
"""


def _run(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "SECRET_KEY", "SECRET_KEY_FILE"}
        and not k.startswith("EMAIL_")
    }
    clean.update(
        DJANGO_SETTINGS_MODULE="xrouter_site.settings",
        XROUTER_VAR_DIR=str(tmp_path),
        SECURE_SSL_REDIRECT="false",
        **env,
    )
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=clean, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("entry", ["xrouter_site.wsgi", "xrouter_site.asgi"])
def test_no_secret_key_without_debug_refuses_to_start(tmp_path: Path, entry: str) -> None:
    out = _run(["-c", f"import {entry}"], {"DEBUG": "false"}, tmp_path)
    assert out.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY is not set and DEBUG is off" in out.stderr


def test_gunicorn_refuses_to_serve_without_secret_key(tmp_path: Path) -> None:
    out = _run(
        [
            "-m",
            "gunicorn",
            "-c",
            str(REPO / "deploy" / "gunicorn.conf.py"),
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "1",
            "xrouter_site.wsgi:application",
        ],
        {"DEBUG": "false"},
        tmp_path,
    )
    assert out.returncode != 0
    assert "SECRET_KEY is not set and DEBUG is off" in out.stderr


@pytest.mark.parametrize(
    "env",
    [{"DEBUG": "true"}, {"DEBUG": "false", "SECRET_KEY": "s" * 20 + "Vq8#zL!m2@pR5^tY7&uI9*oP0"}],
)
def test_debug_or_a_real_key_starts(tmp_path: Path, env: dict[str, str]) -> None:
    out = _run(["-c", "import xrouter_site.wsgi; print('up')"], env, tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("up")


def test_reset_link_is_not_printed_outside_debug(tmp_path: Path) -> None:
    out = _run(["-c", RESET_PROBE], {"DEBUG": "false", "SECRET_KEY": "k" * 60}, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "BACKEND xrouter_site.mail.DroppingEmailBackend" in out.stdout
    assert "STATUS 302 /accounts/password/reset/sent/" in out.stdout
    everything = out.stdout + out.stderr
    assert "/accounts/password/reset/" in everything  # the redirect above
    assert "/accounts/password/reset/M" not in everything  # uidb64 of pk 1 starts "M"
    assert "dana@example.com" not in everything
    assert "e-mail not sent: EMAIL_HOST is not set" in out.stderr


def test_reset_link_is_printed_in_debug(tmp_path: Path) -> None:
    out = _run(["-c", RESET_PROBE], {"DEBUG": "true"}, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "BACKEND django.core.mail.backends.console.EmailBackend" in out.stdout
    assert "/accounts/password/reset/M" in out.stdout + out.stderr
