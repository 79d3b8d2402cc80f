"""The database limiter (no Redis) on PostgreSQL: exact under concurrency."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from django.db import connection

from routing.limits.database import DatabaseLimiter
from routing.limits.types import WINDOW_MS, Decision, Limit
from routing.models import LimiterEntry
from xrouter_site.errors import ErrorCode


def _rpm(limit: int) -> Limit:
    return Limit("r", "key", "rl:{t1}:k1:rpm", limit, 1, WINDOW_MS)


def test_rpm_admits_exactly_the_limit_from_many_connections(transactional_db: None) -> None:
    """40 concurrent decisions on 8 connections: exactly 10 admitted."""
    engine = DatabaseLimiter()
    barrier = threading.Barrier(8)

    def burst(_: int) -> list[Decision]:
        try:
            barrier.wait()
            return [engine.acquire([_rpm(10)], f"m{threading.get_ident()}-{i}") for i in range(5)]
        finally:
            connection.close()

    with ThreadPoolExecutor(8) as pool:
        decisions = [d for batch in pool.map(burst, range(8)) for d in batch]
    admitted = [d for d in decisions if d.allowed]
    refused = [d for d in decisions if not d.allowed]
    assert len(admitted) == 10 and len(refused) == 30
    assert all(d.engine == "database" for d in decisions)
    for d in refused:
        assert d.failed is not None and d.failed.code == ErrorCode.RATE_LIMIT_REQUESTS
        assert d.used == 10
        assert 1 <= d.retry_after_ms <= WINDOW_MS
    assert sorted(d.remaining[0] for d in admitted) == list(range(10))
    assert LimiterEntry.objects.filter(limit_key="rl:{t1}:k1:rpm").count() == 10


def test_budget_starts_from_the_record_and_settles_to_the_real_cost(db: None) -> None:
    engine = DatabaseLimiter()
    calls = []

    def spent() -> int:
        calls.append(1)
        return 400

    budget = Limit("b", "key", "bud:{t1}:k1:monthly:0", 1000, 500, 86_400_000, initial=spent)
    first = engine.acquire([budget], "a")
    assert first.allowed and first.remaining == [100]
    # The next reservation does not fit: refused with what is used so far.
    second = engine.acquire([budget], "b")
    assert not second.allowed and second.used == 900
    # The first request cost 120, not 500: the difference is refunded.
    engine.settle([budget], "a", {"cost": 120})
    counter = LimiterEntry.objects.get(limit_key=budget.key, member="")
    assert counter.weight == 520
    # 480 more fits exactly; one micro-rouble more would not.
    exact = Limit("b", "key", budget.key, 1000, 480, 86_400_000, initial=spent)
    over = Limit("b", "key", budget.key, 1000, 1, 86_400_000, initial=spent)
    assert engine.acquire([exact], "c").allowed
    assert not engine.acquire([over], "d").allowed
    assert calls == [1]  # the record is read once per period, not per request


def test_concurrency_lease_is_released_and_renewed(db: None) -> None:
    engine = DatabaseLimiter()
    lease = Limit("c", "key", "rl:{t1}:k1:conc", 1, 1, 60_000)
    assert engine.acquire([lease], "a").allowed
    blocked = engine.acquire([lease], "b")
    assert not blocked.allowed and blocked.retry_after_ms == 1000
    before = LimiterEntry.objects.get(limit_key=lease.key, member="a").expires_ms
    engine.settle([lease], "a", {"renew": 1})
    assert LimiterEntry.objects.get(limit_key=lease.key, member="a").expires_ms >= before
    engine.settle([lease], "a", {"renew": 0})
    assert engine.acquire([lease], "b").allowed
