"""One Redis client per process for the cache (xrouter_site/redis_cache.py, issue 19)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.core.cache import caches

from xrouter_site.redis_cache import RedisCache


@pytest.fixture
def redis_cache(settings: Any) -> RedisCache:
    if not settings.XROUTER_SHARED_CACHE:
        pytest.skip("needs REDIS_URL")
    cache = caches["default"]
    assert isinstance(cache, RedisCache)
    return cache


def test_every_thread_shares_one_client_and_one_pool(redis_cache: RedisCache) -> None:
    """caches[] is per thread (per greenlet under gevent); the client behind it is not."""
    seen: list[tuple[int, int, int]] = []

    def use() -> None:
        cache = caches["default"]
        cache.set("redis-cache-test", "v", 5)
        assert cache.get("redis-cache-test") == "v"
        inner: Any = cache
        client = inner._cache.get_client()
        seen.append((id(cache), id(inner._cache), id(client.connection_pool)))

    threads = [threading.Thread(target=use) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(seen) == 4
    assert len({instance for instance, _c, _p in seen}) == 4  # Django's per-thread caches
    assert len({client for _i, client, _p in seen}) == 1
    assert len({pool for _i, _c, pool in seen}) == 1


def test_the_redis_client_is_built_once(redis_cache: RedisCache) -> None:
    inner: Any = redis_cache
    first = inner._cache.get_client()
    assert inner._cache.get_client() is first
    assert inner._cache.get_client(write=True) is first  # one server: one pool
