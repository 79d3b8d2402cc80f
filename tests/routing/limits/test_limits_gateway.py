"""Limits through the real gateway: many gunicorn workers, one Redis (or a
Redis Cluster), exact counts, the right 429s, and a Redis outage."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest
import requests
from django.conf import settings

from keys.services import CreatedKey
from tests.conftest import openai_catalog
from tests.gateway_process import running_gateway
from tests.redis_servers import redis_cluster, redis_server
from tests.waiting import wait_until

pytestmark = pytest.mark.slow
# The production path: settles go out in background batches.
ASYNC = {"XROUTER_LIMITER_ASYNC_SETTLE": "true"}
BODY = orjson.dumps({"model": "local/mock", "messages": [{"role": "user", "content": "hi"}]})
STREAM = orjson.dumps(
    {"model": "local/mock", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
)


@pytest.fixture
def catalog(transactional_db: None, load_catalog: Any, upstream: Any) -> Iterator[Any]:
    load_catalog(openai_catalog(upstream.base_url))
    upstream.control.reset()
    yield upstream
    upstream.control.reset()


def post(url: str, key: str, body: bytes = BODY, **kwargs: Any) -> requests.Response:
    return requests.post(
        url + "/v1/chat/completions",
        data=body,
        timeout=30,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        **kwargs,
    )


def hammer(url: str, key: str, count: int, threads: int = 32) -> list[requests.Response]:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda _: post(url, key), range(count)))


def assert_rpm_exact(responses: list[requests.Response], limit: int) -> None:
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == limit, statuses
    assert statuses.count(429) == len(responses) - limit
    for response in responses:
        if response.status_code == 200:
            assert response.headers["x-ratelimit-limit-requests"] == str(limit)
            assert 0 <= int(response.headers["x-ratelimit-remaining-requests"]) < limit
            continue
        error = response.json()["error"]
        assert error["code"] == "rate_limit_requests"
        assert error["type"] == "rate_limit_error"
        retry_after = int(response.headers["Retry-After"])
        assert 1 <= retry_after <= 60
        assert response.headers["x-ratelimit-limit-requests"] == str(limit)
        assert response.headers["x-ratelimit-remaining-requests"] == "0"


def test_rpm_is_exact_across_four_workers(catalog: Any, make_key: Any) -> None:
    key: CreatedKey = make_key(rpm_limit=40)
    with running_gateway(workers=4, env=ASYNC) as gateway:
        responses = hammer(gateway.url, key.plaintext, 160)
    assert_rpm_exact(responses, 40)


def test_concurrency_cap_holds_with_slow_streams(catalog: Any, make_key: Any) -> None:
    catalog.control.set_config(stream_tokens=20, chunk_interval_ms=100)  # 2 s streams
    key: CreatedKey = make_key(concurrency_limit=3)

    def stream(_: int) -> tuple[int, str]:
        response = post(gateway.url, key.plaintext, STREAM, stream=True)
        if response.status_code != 200:
            return response.status_code, response.json()["error"]["code"]
        done = any(line == b"data: [DONE]" for line in response.iter_lines())
        return 200, "done" if done else "incomplete"

    with running_gateway(workers=4, env=ASYNC) as gateway:
        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(stream, range(12)))
        assert results.count((200, "done")) == 3, results
        assert results.count((429, "concurrency_limit")) == 9
        # The slots were released when the streams ended (settles are sent
        # in a background batch, within milliseconds).
        wait_until(
            lambda: post(gateway.url, key.plaintext).status_code == 200,
            timeout=1,
            what="the finished streams' slots to be released",
        )


def test_team_limit_is_shared_by_its_keys(catalog: Any, make_key: Any, team: Any) -> None:
    team.rpm_limit = 10
    team.save()
    first, second = make_key(), make_key()
    with running_gateway(workers=4, env=ASYNC) as gateway:
        responses = hammer(gateway.url, first.plaintext, 8) + hammer(
            gateway.url, second.plaintext, 8
        )
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 10
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 429} == {
        "rate_limit_requests"
    }


def test_rpm_is_exact_on_a_redis_cluster(catalog: Any, make_key: Any) -> None:
    key: CreatedKey = make_key(rpm_limit=25)
    with redis_cluster() as nodes:
        env = {
            **ASYNC,
            "XROUTER_LIMITER_REDIS_URL": nodes[0].url,
            "XROUTER_REDIS_CLUSTER": "true",
        }
        with running_gateway(workers=4, env=env) as gateway:
            responses = hammer(gateway.url, key.plaintext, 100)
            assert "CROSSSLOT" not in gateway.log()
    assert_rpm_exact(responses, 25)


def test_redis_outage_fails_open_fast_and_recovers(catalog: Any, make_key: Any) -> None:
    roomy: CreatedKey = make_key(rpm_limit=10_000)
    with redis_server() as limiter_redis:
        env = {**ASYNC, "XROUTER_LIMITER_REDIS_URL": limiter_redis.url}
        with running_gateway(workers=2, env=env) as gateway:

            def timed() -> tuple[int, float]:
                started = time.perf_counter()
                status = post(gateway.url, roomy.plaintext).status_code
                return status, time.perf_counter() - started

            baseline = sorted(timed()[1] for _ in range(30))[15]
            limiter_redis.kill()
            during = [timed() for _ in range(60)]
            # Each worker's last failed Redis call was before this moment.
            retry_at = time.monotonic() + settings.XROUTER_LIMITER_RETRY_SECONDS
            assert [status for status, _ in during] == [200] * 60
            worst = max(elapsed for _, elapsed in during)
            assert worst - baseline < 0.1, f"{worst=:.3f}s baseline={baseline:.3f}s"
            assert "using the in-process limiter" in gateway.log()

            limiter_redis.start()
            # The workers go back to Redis only XROUTER_LIMITER_RETRY_SECONDS
            # after their last failure: that interval is the behaviour under
            # test, so wait out what is left of it (the restart took some).
            time.sleep(max(0.0, retry_at + 0.1 - time.monotonic()))
            tight: CreatedKey = make_key(rpm_limit=12)
            assert_rpm_exact(hammer(gateway.url, tight.plaintext, 40), 12)
