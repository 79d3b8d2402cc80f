"""The one place Redis connections are made: plain, TLS or through Sentinel.

Every use of Redis (the Django cache with key lookups, breakers and the
catalog version; the limiter; the usage stream and its consumer; Celery's
broker and results) takes its URL from settings and its connections from
here, so one setting switches all of them to Redis Sentinel:

    REDIS_URL=redis+sentinel://[user:password@]host1:26379,host2:26379/mymaster/0

``redis+sentinel://`` (``rediss+sentinel://`` for TLS to the data nodes)
names the Sentinels, the monitored service and the database. The
user/password part authenticates to the Redis data nodes; Sentinels that
need their own password take ``?sentinel_password=...``. Connections are
made to whichever node the Sentinels report as master at that moment: after
a failover the next connection goes to the new master, and a connection
still open to the demoted one fails once (READONLY) and is replaced, so no
process needs a restart.

Redis Cluster (XROUTER_REDIS_CLUSTER) is supported by the limiter only;
``cluster_refusal`` says at start-up why any other use cannot run on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

import redis
from django.core.exceptions import ImproperlyConfigured
from redis.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedSSLConnection

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelTarget:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)
    ssl: bool = False


def is_sentinel(url: str) -> bool:
    return url.split("://", 1)[0].lower() in SENTINEL_SCHEMES


def parse_sentinel_url(url: str) -> SentinelTarget:
    """Parse ``redis+sentinel://[user:pw@]h1:p1,h2:p2/service[/db][?sentinel_password=]``."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SENTINEL_SCHEMES:
        raise ImproperlyConfigured(f"not a redis+sentinel:// URL: {_redact(url)}")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = []
    for item in (part.strip() for part in hosts.split(",")):
        host, port = item, ""
        if item.startswith("["):  # [IPv6]:port
            host, _, port = item[1:].partition("]")
            port = port.removeprefix(":")
        elif ":" in item:
            host, _, port = item.rpartition(":")
        if not host:
            raise ImproperlyConfigured(f"{_redact(url)}: an empty Sentinel host")
        try:
            sentinels.append((host, int(port) if port else DEFAULT_SENTINEL_PORT))
        except ValueError:
            raise ImproperlyConfigured(f"{_redact(url)}: bad Sentinel port {port!r}") from None
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise ImproperlyConfigured(
            f"{_redact(url)}: name the monitored service, e.g. redis+sentinel://h:26379/mymaster/0"
        )
    if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise ImproperlyConfigured(f"{_redact(url)}: the path is /service[/db]")
    options = dict(parse_qsl(query))
    unknown = set(options) - {"sentinel_password"}
    if unknown:
        raise ImproperlyConfigured(f"{_redact(url)}: unknown options {sorted(unknown)}")
    return SentinelTarget(
        sentinels=tuple(sentinels),
        service=unquote(parts[0]),
        db=int(parts[1]) if len(parts) == 2 else 0,
        username=username,
        password=password,
        sentinel_password=options.get("sentinel_password"),
        ssl=scheme.lower().startswith("rediss"),
    )


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    userinfo, at, tail = rest.partition("@")
    return f"{scheme}{sep}***@{tail}" if at else url


def connection_pool(url: str, **options: Any) -> redis.ConnectionPool:
    """A connection pool for ``url``; ``options`` are redis-py connection kwargs."""
    if not is_sentinel(url):
        return redis.ConnectionPool.from_url(url, **options)
    target = parse_sentinel_url(url)
    # Sentinel queries are tiny: bound them like the data connections.
    sentinel_kwargs: dict[str, Any] = {
        key: options[key] for key in ("socket_timeout", "socket_connect_timeout") if key in options
    }
    if target.sentinel_password:
        sentinel_kwargs["password"] = target.sentinel_password
    connection = {**options, "db": target.db}
    if target.password is not None:
        connection["password"] = target.password
    if target.username:
        connection["username"] = target.username
    if target.ssl:
        connection["connection_class"] = SentinelManagedSSLConnection
    # Only the data-node settings: a Sentinel is asked with sentinel_kwargs.
    manager = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_kwargs, **connection)
    return SentinelConnectionPool(target.service, manager, **connection)


def client(url: str, **options: Any) -> redis.Redis:
    """A redis-py client for ``url`` (plain, TLS or Sentinel)."""
    return redis.Redis(connection_pool=connection_pool(url, **options))


class PoolFactory:
    """Django's RedisCache ``pool_class``: it calls ``from_url(location, **OPTIONS)``."""

    @classmethod
    def from_url(cls, url: str, **options: Any) -> redis.ConnectionPool:
        return connection_pool(url, **options)


def celery_url(url: str) -> tuple[str, dict[str, Any]]:
    """Kombu's form of ``url`` and the transport options it needs.

    Kombu names each Sentinel as ``sentinel://[:password@]host:port`` joined
    by ``;`` and takes the service from ``master_name``.
    """
    if not is_sentinel(url):
        return url, {}
    target = parse_sentinel_url(url)
    auth = ""
    if target.password is not None:
        auth = f"{target.username or ''}:{target.password}@"
    hosts = ";".join(
        f"sentinel://{auth}{host}:{port}/{target.db}" for host, port in target.sentinels
    )
    options: dict[str, Any] = {"master_name": target.service}
    if target.sentinel_password:
        options["sentinel_kwargs"] = {"password": target.sentinel_password}
    if target.ssl:
        options["ssl"] = True
    return hosts, options


def cluster_refusal(cluster: bool, urls: dict[str, str], limiter_url: str) -> str | None:
    """Why this configuration cannot run, or None.

    Redis Cluster is used by the limiter (its Lua scripts keep every key of
    one request in one hash slot). The Django cache, the usage stream's
    consumer group and Celery use plain clients: pointing them at a cluster
    fails on the first MOVED reply, so it is refused before anything runs.
    """
    if not cluster:
        return None
    if is_sentinel(limiter_url):
        return "XROUTER_REDIS_CLUSTER=true with a redis+sentinel:// limiter URL: choose one"
    shared = sorted(name for name, url in urls.items() if url and url == limiter_url)
    if shared:
        return (
            "XROUTER_REDIS_CLUSTER=true: Redis Cluster is supported by the limiter only "
            f"(XROUTER_LIMITER_REDIS_URL), but {', '.join(shared)} name the same cluster. "
            "Point them at a single Redis or a redis+sentinel:// URL (docs/operations.md)."
        )
    return None
