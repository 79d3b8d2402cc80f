from __future__ import annotations

from typing import Any

import pytest
from django.test import Client


@pytest.mark.django_db
def test_liveness_needs_nothing(client: Client, django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readiness_checks_database_and_cache(client: Client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "cache": "ok"}


@pytest.mark.django_db
def test_readiness_fails_when_the_cache_is_down(client: Client, settings: Any) -> None:
    from django.core.cache import caches

    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 0.2},
        }
    }
    try:
        response = client.get("/readyz")
    finally:
        caches._settings = None  # type: ignore[attr-defined]
    assert response.status_code == 503
    assert response.json()["checks"]["cache"].startswith("error")


@pytest.mark.django_db
def test_readiness_answers_503_while_draining(client: Client, settings: Any, tmp_path: Any) -> None:
    flag = tmp_path / "draining"
    settings.XROUTER_DRAIN_FILE = str(flag)
    assert client.get("/readyz").status_code == 200
    flag.touch()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "draining"
    # Liveness is unaffected: the process still finishes its streams.
    assert client.get("/healthz").status_code == 200
