"""Django's Redis cache backend with one client per process.

Django's ``RedisCache`` costs more than the Redis round trip it makes, for
two reasons this backend removes (issue 19, measured on the bench box):

- ``RedisCacheClient.get_client()`` builds a new ``redis.Redis`` for every
  operation, and redis-py 8's constructor fills a case-insensitive table of
  ~170 response callbacks each time: a ``cache.get`` took 660 us of CPU
  where the GET itself took 224 us.
- ``django.core.cache.caches`` is per thread, which under gevent means per
  greenlet: every client connection got its own ``RedisCache``, its own
  connection pool and so its own Redis connection (and handshake).

Here every ``RedisCache`` instance of a process with the same servers and
options shares one :class:`SharedRedisCacheClient`, which keeps one
``redis.Redis`` per connection pool. redis-py clients are safe to share
between threads and greenlets (each command takes a connection from the
pool), and pools notice a fork and start over in the child.

Usage (settings)::

    CACHES = {"default": {"BACKEND": "xrouter_site.redis_cache.RedisCache", ...}}
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient
from django.utils.functional import cached_property

_clients: dict[str, SharedRedisCacheClient] = {}
_clients_lock = threading.Lock()


class SharedRedisCacheClient(RedisCacheClient):
    """Django's client, with one ``redis.Redis`` per pool instead of one per call."""

    def __init__(self, servers: list[str], **options: Any) -> None:
        super().__init__(servers, **options)
        self._redis: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        django: Any = self  # Django's private helpers are not in its stubs
        index = django._get_connection_pool_index(write)
        client = self._redis.get(index)
        if client is None:
            # Two greenlets racing here both build one; the last one stays.
            client = django._client(connection_pool=django._get_connection_pool(write))
            self._redis[index] = client
        return client


class RedisCache(DjangoRedisCache):
    """``django.core.cache.backends.redis.RedisCache`` sharing its client process-wide."""

    @cached_property
    def _cache(self) -> SharedRedisCacheClient:
        django: Any = self  # _servers and _options are not in Django's stubs
        servers, options = django._servers, django._options
        identity = repr((list(servers), sorted(options.items())))
        with _clients_lock:
            client = _clients.get(identity)
            if client is None:
                client = SharedRedisCacheClient(servers, **options)
                _clients[identity] = client
        return client
