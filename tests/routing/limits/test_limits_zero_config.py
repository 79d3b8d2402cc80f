"""Zero-config limits: no Redis, no DATABASE_URL, two real gunicorn workers.

The workers share nothing but the SQLite file, so that is where limits and
budgets live (routing.limits.database); a per-process limiter would let each
worker admit the whole limit.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from tests.conftest import openai_catalog
from tests.gateway_process import REPO_ROOT, Gateway, running_gateway

pytestmark = pytest.mark.slow

# Everything that would give the workers a shared store other than the file.
SHARED = (
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "XROUTER_LIMITER_REDIS_URL",
    "XROUTER_USAGE_REDIS_URL",
    "PROMETHEUS_MULTIPROC_DIR",
)
PRICE_PROMPT, PRICE_COMPLETION = Decimal("0.5"), Decimal("1.5")


def _manage(var: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in SHARED}
    env.update(XROUTER_VAR_DIR=str(var), DJANGO_SETTINGS_MODULE="tests.settings")
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip()


@pytest.fixture(scope="module")
def zero_config(
    upstream: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, Path]]:
    var = tmp_path_factory.mktemp("zero-config")
    catalog = var / "catalog.yaml"
    catalog.write_text(openai_catalog(upstream.base_url), encoding="utf-8")
    _manage(var, "migrate", "-v0")
    env = {
        "XROUTER_VAR_DIR": str(var),
        "XROUTER_CATALOG": str(catalog),
        "XROUTER_DEBUG_SERVED_BY": "true",
        "TEST_UPSTREAM_KEY": "upstream-secret-for-tests",
    }
    with running_gateway(workers=2, env=env, unset=SHARED, own_database=True) as gateway:
        yield gateway, var


def _chat(gateway: Gateway, key: str, **body: Any) -> requests.Response:
    payload = {"model": "local/mock", "messages": [{"role": "user", "content": "hi"}], **body}
    return requests.post(
        gateway.url + "/v1/chat/completions",
        data=orjson.dumps(payload),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=30,
    )


def _both_workers_serve(gateway: Gateway, key: str) -> None:
    """Warm both workers up, and fail unless both answer."""
    seen: set[str] = set()
    deadline = time.monotonic() + 20
    with ThreadPoolExecutor(8) as pool:
        while len(seen) < 2 and time.monotonic() < deadline:
            for response in pool.map(lambda _: _chat(gateway, key), range(8)):
                assert response.status_code == 200, response.text
                seen.add(response.headers["X-Served-By"])
    assert len(seen) == 2, seen


def _records(var: Path, key_prefix: str) -> list[tuple[int, str]]:
    with sqlite3.connect(var / "xrouter.sqlite3", timeout=20) as db:
        return db.execute(
            "SELECT r.status, r.cost_rub FROM routing_usagerecord r "
            "JOIN keys_apikey k ON k.id = r.key_id WHERE k.prefix = ?",
            (key_prefix,),
        ).fetchall()


def _wait_for_records(var: Path, key_prefix: str, count: int) -> list[tuple[int, str]]:
    deadline = time.monotonic() + 15
    while True:
        rows = _records(var, key_prefix)
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_rpm_and_budget_hold_exactly_across_two_zero_config_workers(
    zero_config: tuple[Gateway, Path],
) -> None:
    """3 requests/minute admit exactly 3 of 24; a budget is never overshot."""
    gateway, var = zero_config
    warm = _manage(var, "createapikey", "--team", "zc", "--name", "warm")
    _both_workers_serve(gateway, warm)

    limited = _manage(var, "createapikey", "--team", "zc", "--name", "rpm", "--rpm", "3")
    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda _: _chat(gateway, limited), range(24)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 3, statuses
    assert statuses.count(429) == 21, statuses
    assert {r.headers["X-Served-By"] for r in responses} == {
        str(pid) for pid in gateway.worker_pids()
    }
    for response in responses:
        if response.status_code == 429:
            error = response.json()["error"]
            assert error["code"] == "rate_limit_requests"
            assert error["message"].startswith("Rate limit reached: the key limit is 3 requests")
            assert 1 <= int(response.headers["Retry-After"]) <= 60

    # Each request reserves its prompt estimate (5 tokens for "hi") plus
    # max_tokens=8 and uses at most that. A burst on both workers must not
    # overshoot the budget; requests one by one then use it up to less
    # than one reservation.
    budget = Decimal("0.05")
    reservation = (PRICE_PROMPT * 5 + PRICE_COMPLETION * 8) / 1000
    funded = _manage(var, "createapikey", "--team", "zc", "--name", "bud", "--budget", "0.05")
    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda _: _chat(gateway, funded, max_tokens=8), range(30)))
    for _ in range(30):
        responses.append(_chat(gateway, funded, max_tokens=8))
        if responses[-1].status_code != 200:
            break
    served = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    spent = sum(
        (
            PRICE_PROMPT * r.json()["usage"]["prompt_tokens"]
            + PRICE_COMPLETION * r.json()["usage"]["completion_tokens"]
        )
        / 1000
        for r in served
    )
    assert spent <= budget, (spent, len(served))
    assert budget - spent < reservation, (spent, len(served))
    assert refused and all(r.status_code == 402 for r in refused), [r.text for r in refused]
    last = refused[-1].json()["error"]
    assert last["code"] == "insufficient_budget"
    # Money is left, so the refusal must not claim the budget is spent.
    assert "is spent" not in last["message"]
    assert "RUB left for this period" in last["message"], last["message"]

    # Nothing served is missing from the record, and the record agrees.
    prefix = funded[:12]
    rows = _wait_for_records(var, prefix, len(served) + len(refused))
    assert sorted(status for status, _cost in rows) == sorted(
        [200] * len(served) + [402] * len(refused)
    )
    assert sum(Decimal(str(cost)) for _status, cost in rows) == spent
