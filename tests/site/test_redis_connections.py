"""xrouter_site.redis_connections: one factory for plain and Sentinel Redis.

The Sentinel tests run a real master, replica and Sentinel on loopback and
force a failover: clients made once keep working against the new master.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ImproperlyConfigured

from tests.gateway_process import free_port
from xrouter_site.redis_connections import (
    PoolFactory,
    SentinelTarget,
    celery_url,
    client,
    cluster_refusal,
    parse_sentinel_url,
)

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def test_parse_full_url() -> None:
    target = parse_sentinel_url(
        "redis+sentinel://app:s%40cret@10.0.0.1:26379,sentinel-b:26380/mymaster/3"
        "?sentinel_password=sp"
    )
    assert target == SentinelTarget(
        sentinels=(("10.0.0.1", 26379), ("sentinel-b", 26380)),
        service="mymaster",
        db=3,
        username="app",
        password="s@cret",
        sentinel_password="sp",
        ssl=False,
    )


def test_parse_defaults_ipv6_and_tls() -> None:
    target = parse_sentinel_url("rediss+sentinel://:pw@[::1]:26390,host-b/cache")
    assert target.sentinels == (("::1", 26390), ("host-b", 26379))
    assert (target.service, target.db, target.password, target.ssl) == ("cache", 0, "pw", True)
    assert target.username is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+sentinel://h:26379", "name the monitored service"),
        ("redis+sentinel://h:26379/", "name the monitored service"),
        ("redis+sentinel://h:port/m", "bad Sentinel port"),
        ("redis+sentinel://h:1,/m", "empty Sentinel host"),
        ("redis+sentinel://h:1/m/zero", "the path is /service[/db]"),
        ("redis+sentinel://h:1/m/0/x", "the path is /service[/db]"),
        ("redis+sentinel://h:1/m?socket_timeout=1", "unknown options"),
        ("redis://h:6379/0", "not a redis+sentinel:// URL"),
    ],
)
def test_bad_urls_are_refused_clearly(url: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=re.escape(message)):
        parse_sentinel_url(url)


def test_errors_never_show_the_password() -> None:
    with pytest.raises(ImproperlyConfigured) as caught:
        parse_sentinel_url("redis+sentinel://u:topsecret@h:x/m")
    assert "topsecret" not in str(caught.value)


def test_celery_url_for_sentinel_and_plain() -> None:
    url, options = celery_url("redis+sentinel://:pw@a:26379,b:26380/mymaster/2?sentinel_password=s")
    assert url == "sentinel://:pw@a:26379/2;sentinel://:pw@b:26380/2"
    assert options == {"master_name": "mymaster", "sentinel_kwargs": {"password": "s"}}
    assert celery_url("redis://r:6379/1") == ("redis://r:6379/1", {})


def test_cluster_is_refused_where_it_cannot_work() -> None:
    cluster_url = "redis://node-1:7000/0"
    assert cluster_refusal(False, {"REDIS_URL": cluster_url}, cluster_url) is None
    assert cluster_refusal(True, {"REDIS_URL": "redis://single:6379/0"}, cluster_url) is None
    refusal = cluster_refusal(
        True, {"REDIS_URL": cluster_url, "CELERY_BROKER_URL": cluster_url}, cluster_url
    )
    assert refusal is not None
    assert "limiter only" in refusal
    assert "CELERY_BROKER_URL, REDIS_URL" in refusal
    assert "choose one" in (cluster_refusal(True, {}, "redis+sentinel://s:1/m") or "")


@dataclass
class SentinelSet:
    master_port: int
    replica_port: int
    sentinel_port: int
    service: str = "xrtest"

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{self.service}/0"

    def sentinel(self) -> redis.Redis:
        return redis.Redis(port=self.sentinel_port, socket_timeout=2)

    def master_port_now(self) -> int:
        host, port = self.sentinel().sentinel_get_master_addr_by_name(self.service)
        return int(port)


def _redis(port: int, workdir: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir), "--loglevel", "warning", *extra],
    )  # fmt: skip


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def sentinel_set(tmp_path: Path) -> Iterator[SentinelSet]:
    ports = SentinelSet(free_port(), free_port(), free_port())
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {ports.sentinel_port}\nbind 127.0.0.1\n"
        f"sentinel monitor {ports.service} 127.0.0.1 {ports.master_port} 1\n"
        f"sentinel down-after-milliseconds {ports.service} 1000\n"
        f"sentinel failover-timeout {ports.service} 4000\n"
    )
    processes = [
        _redis(ports.master_port, tmp_path),
        _redis(ports.replica_port, tmp_path, "--replicaof", "127.0.0.1", str(ports.master_port)),
    ]
    try:
        for port in (ports.master_port, ports.replica_port):
            _wait(lambda p=port: redis.Redis(port=p).ping(), 10, f"redis on {port}")
        _wait(
            lambda: (
                redis.Redis(port=ports.replica_port).info("replication")["master_link_status"]
                == "up"
            ),
            10,
            "the replica to sync",
        )
        processes.append(
            subprocess.Popen([REDIS_SERVER, str(conf), "--sentinel", "--dir", str(tmp_path)])
        )
        _wait(lambda: ports.sentinel().ping(), 10, "the sentinel")
        _wait(
            lambda: ports.sentinel().sentinel_master(ports.service)["num-slaves"] >= 1,
            15,
            "the sentinel to see the replica",
        )
        yield ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)


def _failover(ports: SentinelSet) -> int:
    before = ports.master_port_now()
    # Until the Sentinel has fresh INFO from the replica it answers NOGOODSLAVE.
    _wait(
        lambda: ports.sentinel().execute_command("SENTINEL", "FAILOVER", ports.service),
        20,
        "the Sentinel to accept a failover",
    )
    _wait(lambda: ports.master_port_now() != before, 20, "the failover")
    new = ports.master_port_now()
    _wait(lambda: redis.Redis(port=new).info("replication")["role"] == "master", 10, "promotion")
    # The old master takes writes until the Sentinel turns it into a replica.
    _wait(
        lambda: redis.Redis(port=before).info("replication")["role"] == "slave",
        15,
        "the old master to be demoted",
    )
    return new


def test_a_client_follows_the_master_across_a_failover(sentinel_set: SentinelSet) -> None:
    conn = client(sentinel_set.url, socket_timeout=1, socket_connect_timeout=1)
    conn.set("before", "1")
    assert redis.Redis(port=sentinel_set.master_port).get("before") == b"1"

    new_master = _failover(sentinel_set)
    assert new_master == sentinel_set.replica_port

    errors = 0
    for _ in range(20):
        try:
            conn.set("after", "2")
            break
        except (redis.ConnectionError, redis.ReadOnlyError):
            errors += 1
            time.sleep(0.2)
    # At most the connection that was open to the demoted master fails.
    assert errors <= 1
    assert redis.Redis(port=new_master).get("after") == b"2"
    assert conn.get("before") == b"1"


def test_the_django_cache_runs_on_sentinel(sentinel_set: SentinelSet) -> None:
    cache = RedisCache(
        [sentinel_set.url],
        {"OPTIONS": {"pool_class": PoolFactory, "socket_timeout": 1}, "KEY_PREFIX": "t"},
    )
    cache.set("catalog-version", 7)
    new_master = _failover(sentinel_set)
    value = None
    for _ in range(20):
        try:
            value = cache.get("catalog-version")
            cache.set("breaker:1", "open")
            break
        except (redis.ConnectionError, redis.ReadOnlyError):
            time.sleep(0.2)
    assert value == 7
    assert redis.Redis(port=new_master).exists("t:1:breaker:1") == 1
