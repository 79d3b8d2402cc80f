"""The limiter's algorithms, on real Redis and in-process."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from routing.limits.limiter import Limiter
from routing.limits.local import LocalLimiter
from routing.limits.types import Decision, Limit, format_duration
from tests.waiting import wait_until


@pytest.fixture
def limiter(settings: Any) -> Iterator[Limiter]:
    assert settings.REDIS_URL, "the limiter tests need Redis (make test sets REDIS_URL)"
    settings.XROUTER_LIMITER_REDIS_URL = settings.REDIS_URL
    instance = Limiter()
    yield instance
    instance.reset()


def _key(kind: str) -> str:
    return f"test:{{t{uuid.uuid4().hex[:8]}}}:{kind}"


def rpm(limit: int, key: str | None = None) -> Limit:
    return Limit("r", "key", key or _key("rpm"), limit, 1, 60_000)


def test_requests_window_admits_exactly_the_limit(limiter: Limiter) -> None:
    limit = rpm(5)
    decisions = [limiter.acquire([limit]) for _ in range(8)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 3
    assert [d.remaining[0] for d in decisions[:5]] == [4, 3, 2, 1, 0]
    refused = decisions[-1]
    assert refused.failed is limit
    # The first admitted request leaves the window in a little under 60 s.
    assert 55_000 < refused.retry_after_ms <= 60_000


def test_requests_window_is_exact_under_concurrency(limiter: Limiter) -> None:
    limit = rpm(50)
    admitted: list[bool] = []

    def worker() -> None:
        for _ in range(25):
            admitted.append(Limiter.acquire(limiter, [limit]).allowed)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert admitted.count(True) == 50
    assert len(admitted) == 200


def test_window_slides(limiter: Limiter) -> None:
    limit = Limit("r", "key", _key("short"), 2, 1, 300)  # a 300 ms window
    assert [limiter.acquire([limit]).allowed for _ in range(3)] == [True, True, False]
    time.sleep(0.35)  # the window sliding past is what is under test
    assert limiter.acquire([limit]).allowed is True


def test_every_limit_is_checked_before_any_is_consumed(limiter: Limiter) -> None:
    loose, tight = rpm(10), rpm(1)
    assert limiter.acquire([loose, tight]).allowed is True
    refused = limiter.acquire([loose, tight])
    assert refused.allowed is False and refused.failed is tight
    # The refused request did not use up the loose limit.
    assert limiter.acquire([loose]).remaining == [8]


def test_tokens_reserve_then_settle(limiter: Limiter) -> None:
    key = _key("tpm")
    first = limiter.acquire([Limit("t", "key", key, 1000, 600, 60_000)])
    assert first.allowed and first.remaining == [400]
    # 600 reserved; a second request for 500 does not fit yet.
    assert limiter.acquire([Limit("t", "key", key, 1000, 500, 60_000)]).allowed is False
    limiter.settle(first, tokens=100)  # it really used 100
    second = limiter.acquire([Limit("t", "key", key, 1000, 500, 60_000)])
    assert second.allowed and second.remaining == [400]
    client = limiter._redis()
    assert int(client.get(key + ":sum")) == 600
    assert client.zcard(key) == 2


def test_token_request_larger_than_the_limit_is_refused(limiter: Limiter) -> None:
    decision = limiter.acquire([Limit("t", "key", _key("tpm"), 100, 101, 60_000)])
    assert decision.allowed is False and decision.failed is not None
    assert decision.failed.code == "rate_limit_tokens"


def test_concurrency_leases_release_renew_and_expire(limiter: Limiter) -> None:
    key = _key("conc")
    lease = Limit("c", "key", key, 2, 1, 400)
    a, b = limiter.acquire([lease]), limiter.acquire([lease])
    assert a.allowed and b.allowed
    third = limiter.acquire([lease])
    assert third.allowed is False and third.failed.code == "concurrency_limit"
    limiter.settle(a)  # a finished
    c = limiter.acquire([lease])
    assert c.allowed
    time.sleep(0.25)  # lease expiry is under test: real time must pass
    limiter.settle(c, renew=True)  # c is a long stream: renewed, b is not
    time.sleep(0.25)  # b's lease (400 ms) expired, c's has 150 ms left
    assert limiter.acquire([lease]).allowed is True
    assert limiter.acquire([lease]).allowed is False


def test_budget_initialises_from_the_record_once(limiter: Limiter) -> None:
    calls: list[int] = []

    def spent_so_far() -> int:
        calls.append(1)
        return 900

    budget = Limit("b", "key", _key("budget"), 1000, 60, 3_600_000, initial=spent_so_far)
    assert limiter.acquire([budget]).allowed is True  # 900 + 60 <= 1000
    assert limiter.acquire([budget]).allowed is False  # 960 + 60 > 1000
    assert calls == [1]


def test_two_concurrent_requests_cannot_share_a_budget_for_one(limiter: Limiter) -> None:
    key = _key("budget")
    barrier = threading.Barrier(10)
    results: list[bool] = []

    def one() -> None:
        barrier.wait()
        budget = Limit("b", "team", key, 100, 60, 3_600_000, initial=lambda: 0)
        results.append(limiter.acquire([budget]).allowed)

    threads = [threading.Thread(target=one) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1


def test_budget_settles_to_the_real_cost(limiter: Limiter) -> None:
    key = _key("budget")
    budget = Limit("b", "key", key, 1000, 500, 3_600_000, initial=lambda: 0)
    decision = limiter.acquire([budget])
    limiter.settle(decision, cost=120)
    again = limiter.acquire([Limit("b", "key", key, 1000, 880, 3_600_000, initial=lambda: 0)])
    assert again.allowed and again.remaining == [0]


def test_redis_down_falls_back_fast_to_a_share_of_the_limit(settings: Any) -> None:
    settings.XROUTER_LIMITER_REDIS_URL = "redis://127.0.0.1:1/0"
    settings.XROUTER_LIMITER_FALLBACK_SHARE = 2
    limiter = Limiter()
    limit = rpm(10)
    started = time.monotonic()
    decisions = [limiter.acquire([limit]) for _ in range(7)]
    assert time.monotonic() - started < 0.5
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert all(d.engine == "local" for d in decisions)
    assert limiter.fail_open_events == 1  # one failed attempt, then the local limiter


def test_headers_report_the_tightest_limit(limiter: Limiter) -> None:
    decision = limiter.acquire([rpm(100), rpm(3), Limit("t", "key", _key("t"), 5000, 10, 60_000)])
    headers = decision.headers()
    assert headers["x-ratelimit-limit-requests"] == "3"
    assert headers["x-ratelimit-remaining-requests"] == "2"
    assert headers["x-ratelimit-limit-tokens"] == "5000"
    assert headers["x-ratelimit-remaining-tokens"] == "4990"
    assert headers["x-ratelimit-reset-requests"] == "1m0s"


def test_local_limiter_has_the_same_semantics() -> None:
    local = LocalLimiter()
    limit = rpm(3)
    assert [local.acquire([limit], str(i)).allowed for i in range(4)] == [True, True, True, False]
    tokens = Limit("t", "key", "tk", 100, 80, 60_000)
    assert local.acquire([tokens], "a").allowed is True
    assert local.acquire([tokens], "b").allowed is False
    local.settle([tokens], "a", {"tokens": 10})
    assert local.acquire([tokens], "c").allowed is True


@pytest.mark.parametrize(
    ("ms", "text"),
    [(0, "0ms"), (20, "20ms"), (1000, "1s"), (1500, "1.5s"), (60_000, "1m0s"), (360_000, "6m0s")],
)
def test_reset_durations_are_formatted_like_openai(ms: int, text: str) -> None:
    assert format_duration(ms) == text


def test_no_limits_means_no_round_trip(limiter: Limiter) -> None:
    decision = limiter.acquire([])
    assert isinstance(decision, Decision) and decision.allowed and limiter._client is None


def test_scripts_are_reloaded_after_redis_forgets_them(limiter: Limiter, settings: Any) -> None:
    """A Redis restart drops loaded scripts (NOSCRIPT): the batch reloads them."""
    settings.XROUTER_LIMITER_ASYNC_SETTLE = True
    limit = rpm(3)
    tokens = Limit("t", "key", _key("tpm"), 1000, 600, 60_000)
    assert limiter.acquire([limit]).allowed is True
    limiter._redis().script_flush()
    first = limiter.acquire([limit, tokens])
    assert first.allowed is True and limiter.fail_open_events == 0
    limiter._redis().script_flush()
    limiter.settle(first, tokens=100)  # batched in the background
    wait_until(
        lambda: int(limiter._redis().get(tokens.key + ":sum") or 0) == 100,
        timeout=2,
        interval=0.02,
        what="the batched settle to land",
    )
    assert limiter.fail_open_events == 0
