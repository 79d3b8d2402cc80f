"""Settings: zero-config defaults, environment switches, deploy checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROBE = (
    "import json, django; from django.conf import settings; django.setup();"
    "print(json.dumps({'db': settings.DATABASES['default']['ENGINE'],"
    "'cache': settings.CACHES['default']['BACKEND'], 'eager': settings.CELERY_TASK_ALWAYS_EAGER,"
    "'shared': settings.XROUTER_SHARED_CACHE}))"
)


def _probe(code: str, env: dict[str, str]) -> dict[str, object]:
    """Run ``code`` in a fresh process with only ``env``'s services set; return
    the JSON object it prints last."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}
    }
    clean.update(env, DJANGO_SETTINGS_MODULE="xrouter_site.settings")
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=clean,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _settings_with(env: dict[str, str]) -> dict[str, object]:
    return _probe(PROBE, env)


def test_zero_config_uses_sqlite_locmem_and_eager_tasks(tmp_path: Path) -> None:
    assert _settings_with({"XROUTER_VAR_DIR": str(tmp_path)}) == {
        "db": "django.db.backends.sqlite3",
        "cache": "django.core.cache.backends.locmem.LocMemCache",
        "eager": True,
        "shared": False,
    }


def test_environment_switches_to_postgres_redis_and_celery() -> None:
    assert _settings_with(
        {
            "DATABASE_URL": "postgres://u@127.0.0.1:5432/x",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "CELERY_BROKER_URL": "redis://127.0.0.1:6379/1",
        }
    ) == {
        "db": "django.db.backends.postgresql",
        "cache": "xrouter_site.redis_cache.RedisCache",
        "eager": False,
        "shared": True,
    }


@pytest.mark.parametrize("value", ["maybe", "2x"])
def test_bad_values_fail_loudly(value: str) -> None:
    env = {k: v for k, v in os.environ.items()}
    env.update(DEBUG=value, DJANGO_SETTINGS_MODULE="xrouter_site.settings")
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode != 0
    assert "ImproperlyConfigured" in out.stderr and "DEBUG" in out.stderr


def _check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    full.update(env, DJANGO_SETTINGS_MODULE="xrouter_site.settings")
    full.pop("DEBUG", None)
    full.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=REPO,
        env=full,
        capture_output=True,
        text=True,
        check=False,
    )


def test_production_settings_pass_check_deploy() -> None:
    out = _check_deploy(
        {
            "SECRET_KEY": "k" * 20 + "Vq8#zL!m2@pR5^tY7&uI9*oP0(aS3)dF6_gH" * 2,
            "ALLOWED_HOSTS": "xrouter.example",
        }
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # The only remark left is HSTS preload, a commitment each operator makes.
    warnings = [line for line in (out.stdout + out.stderr).splitlines() if "(security." in line]
    assert [w.split(")")[0] for w in warnings] in ([], ["?: (security.W021"])


def test_check_deploy_refuses_the_placeholder_secret_key() -> None:
    out = _check_deploy({"SECRET_KEY": "", "ALLOWED_HOSTS": "xrouter.example"})
    assert out.returncode != 0
    assert "xrouter.E001" in out.stdout + out.stderr


WORKER_PROBE = (
    "import json, sys, django; django.setup();"
    "from xrouter_site.wsgi import application;"
    "import routing.gateway.views, routing.gateway.middleware;"
    "import routing.usage.records, routing.limits.limiter;"
    "before = 'celery' in sys.modules;"
    "from routing.tasks import probe_deployment; from xrouter_site.celery import app;"
    "print(json.dumps({'celery_loaded_by_web': before, 'bound': probe_deployment.app is app,"
    "'broker': app.conf.broker_url}))"
)


def test_web_process_does_not_load_celery_but_tasks_use_the_configured_app() -> None:
    # A gunicorn worker never sends a task: Celery stays out of its memory.
    # Whoever does send one must go through our app and its broker, not
    # Celery's default app (amqp://localhost).
    assert _probe(
        WORKER_PROBE, {"CELERY_BROKER_URL": "redis://127.0.0.1:6379/14", "DEBUG": "true"}
    ) == {
        "celery_loaded_by_web": False,
        "bound": True,
        "broker": "redis://127.0.0.1:6379/14",
    }
