"""Usage records survive a worker killed with SIGKILL."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest
import requests

from routing.models import UsageRecord
from tests.conftest import openai_catalog
from tests.gateway_process import running_gateway
from tests.waiting import wait_until

pytestmark = pytest.mark.slow
BODY = orjson.dumps({"model": "local/mock", "messages": [{"role": "user", "content": "hi"}]})


def _send(url: str, key: str, count: int) -> list[requests.Response]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def one(_: int) -> requests.Response | None:
        try:
            return requests.post(
                url + "/v1/chat/completions", data=BODY, headers=headers, timeout=10
            )
        except requests.RequestException:
            return None  # the killed worker's in-flight requests get no answer

    with ThreadPoolExecutor(16) as pool:
        return [r for r in pool.map(one, range(count)) if r is not None]


def _wait_for_records(ids: set[str], timeout: float) -> None:
    """Wait until every request in ``ids`` has its usage record."""
    found: set[str] = set()

    def all_written() -> bool:
        found.update(
            UsageRecord.objects.filter(request_id__in=ids).values_list("request_id", flat=True)
        )
        return found == ids

    wait_until(
        all_written,
        timeout=timeout,
        interval=0.2,
        what=lambda: f"every record ({len(ids - found)} of {len(ids)} answered requests lost)",
    )


def test_every_answered_request_has_exactly_one_record_after_sigkill(
    transactional_db: None,
    load_catalog: Any,
    make_key: Any,
    upstream: Any,
) -> None:
    load_catalog(openai_catalog(upstream.base_url))
    upstream.control.reset()
    upstream.control.set_config(latency_ms=20)
    key = make_key().plaintext
    env = {"XROUTER_USAGE_CONSUMER": "true", "XROUTER_USAGE_CLAIM_IDLE_SECONDS": "2"}
    try:
        with running_gateway(workers=2, env=env) as gateway:
            with ThreadPoolExecutor(1) as killer:

                def kill_one() -> None:
                    # Mid-traffic, however fast the machine is.
                    wait_until(
                        lambda: upstream.control.stats()["requests_total"] >= 100,
                        timeout=30,
                        what="100 requests upstream before the kill",
                    )
                    os.kill(gateway.worker_pids()[0], signal.SIGKILL)

                pending = killer.submit(kill_one)
                responses = _send(gateway.url, key, 300)
                pending.result()
            answered = {r.headers["X-Request-ID"] for r in responses if r.status_code == 200}
            assert len(answered) > 200
            _wait_for_records(answered, timeout=20)
        # Never twice: one row per request id, and no rows for unknown ids.
        assert UsageRecord.objects.filter(request_id__in=answered).count() == len(answered)
    finally:
        upstream.control.reset()


def test_zero_config_loses_at_most_the_last_flush_interval(
    transactional_db: None,
    load_catalog: Any,
    make_key: Any,
    upstream: Any,
) -> None:
    """Without Redis records wait in a worker's buffer for up to one flush
    interval (1 s); a SIGKILL loses that window and nothing older."""
    load_catalog(openai_catalog(upstream.base_url))
    upstream.control.reset()
    key = make_key().plaintext
    env = {"REDIS_URL": "", "XROUTER_USAGE_FLUSH_SECONDS": "1"}
    with running_gateway(workers=1, env=env) as gateway:
        early = {r.headers["X-Request-ID"] for r in _send(gateway.url, key, 50)}
        # Written within two flush intervals (the bound), then the kill
        # must not lose or repeat any of them.
        _wait_for_records(early, timeout=2.5)
        os.kill(gateway.worker_pids()[0], signal.SIGKILL)
        _wait_for_records(early, timeout=5)
        assert UsageRecord.objects.filter(request_id__in=early).count() == len(early)
