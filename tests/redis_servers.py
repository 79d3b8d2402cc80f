"""Throwaway redis-server processes on loopback ports, for tests that kill
Redis or need a cluster without touching the shared instance."""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.gateway_process import free_port
from tests.waiting import wait_until

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


@dataclass
class RedisServer:
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    cluster: bool = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--loglevel",
            "warning",
        ]
        if self.cluster:
            args += [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{self.port}.conf",
                "--cluster-node-timeout",
                "2000",
            ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        wait_until(
            client.ping,
            timeout=10,
            what=f"redis-server on {self.port} to answer a ping",
            ignoring=(redis.RedisError,),
        )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free and valid too."""
    for _ in range(200):
        port = random.randint(20000, 45000)  # noqa: S311
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A standalone redis-server on a free port, killed at exit."""
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisServer(free_port(), Path(workdir))
        server.start()
        try:
            yield server
        finally:
            server.kill()


@contextlib.contextmanager
def redis_cluster(nodes: int = 6, replicas: int = 1) -> Iterator[list[RedisServer]]:
    """A real Redis Cluster (3 primaries + 3 replicas by default)."""
    with tempfile.TemporaryDirectory() as workdir:
        servers = [RedisServer(cluster_port(), Path(workdir), cluster=True) for _ in range(nodes)]
        try:
            for server in servers:
                server.start()
            subprocess.run(
                [
                    REDIS_CLI,
                    "--cluster",
                    "create",
                    *[f"127.0.0.1:{s.port}" for s in servers],
                    "--cluster-replicas",
                    str(replicas),
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=60,
            )
            client = redis.Redis(port=servers[0].port)
            wait_until(
                lambda: client.cluster("info").get("cluster_state") == "ok",
                timeout=30,
                interval=0.2,
                what="the Redis cluster to be ready",
            )
            yield servers
        finally:
            for server in servers:
                server.kill()
