"""Redis Sentinel drill (`make drill-redis`).

A Redis master and replica with three Sentinels (quorum 2) on loopback; the
gateway has one setting, ``REDIS_URL=redis+sentinel://.../xrdrill/0``, so the
cache (keys, breakers, catalog version), the limiter and the usage stream
all go through Sentinel (xrouter_site.redis_connections). Under steady load
(chat and SSE streams) the master is SIGKILLed; the Sentinels promote the
replica.

Promises: /v1/ error rate below 0.1 % (limits fail open while Redis is
away, key lookups fall back to PostgreSQL); no usage record doubled. Usage
records lost with the dead master (asynchronous replication) are measured
and printed: the documented bound is the records written in the last
instants before the crash. Exits 1 when a promise is broken.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import sys
import time

import redis
from common import (
    Drill,
    Load,
    base_env,
    emulator,
    fresh_database,
    gateway,
    log,
    manage,
    report,
    summarize,
    wait_port,
    wait_usage,
)

MASTER, REPLICA = 27390, 27391
SENTINELS = (27392, 27393, 27394)
EMULATOR, GATEWAY = 27182, 27120
SERVICE = "xrdrill"


def master_port() -> int | None:
    for port in SENTINELS:
        with contextlib.suppress(redis.RedisError):
            address = redis.Redis(port=port, socket_timeout=1).sentinel_get_master_addr_by_name(
                SERVICE
            )
            if isinstance(address, tuple):
                return int(address[1])
    return None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=45)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--kill-at", type=float, default=15)
    parser.add_argument("--admin-db", default="postgres://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    server = shutil.which("redis-server") or sys.exit("redis-server is missing")

    ports = (MASTER, REPLICA, *SENTINELS, EMULATOR, GATEWAY)
    with Drill("redis", ports) as drill, fresh_database(args.admin_db, "xrouter_drill_redis") as db:
        common_args = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                       "--dir", str(drill.dir)]  # fmt: skip
        drill.start("master", [server, "--port", str(MASTER), *common_args])
        drill.start("replica", [server, "--port", str(REPLICA), *common_args,
                                "--replicaof", "127.0.0.1", str(MASTER)])  # fmt: skip
        wait_port(MASTER, 10)
        wait_port(REPLICA, 10)
        for port in SENTINELS:
            conf = drill.dir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {drill.dir}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {MASTER} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 2000\n"
                f"sentinel failover-timeout {SERVICE} 10000\n"
            )
            drill.start(f"sentinel-{port}", [server, str(conf), "--sentinel"])
            wait_port(port, 10)
        hosts = ",".join(f"127.0.0.1:{port}" for port in SENTINELS)
        redis_url = f"redis+sentinel://{hosts}/{SERVICE}/0"
        env = base_env(drill, db, redis_url)
        catalog = emulator(drill, EMULATOR, tokens=20, interval_ms=50)
        manage(env, "migrate", "--noinput")
        manage({**env, "XROUTER_CATALOG": catalog}, "loadcatalog")
        key = manage(env, "createapikey", "--team", "drill", "--name", "drill").splitlines()[-1]
        gateway(drill, "gateway", GATEWAY, env, catalog, workers=2)
        log(f"gateway on 127.0.0.1:{GATEWAY} with REDIS_URL={redis_url}")

        load = Load(url=f"http://127.0.0.1:{GATEWAY}", key=key, clients=args.clients,
                    seconds=args.seconds)  # fmt: skip
        started = time.monotonic()
        runner = load.run_in_background()
        time.sleep(args.kill_at)
        stream_before = redis.Redis(port=MASTER).xlen("xr:usage")
        killed_at = time.monotonic()
        drill.stop("master", sig=signal.SIGKILL, timeout=5)
        log(f"+{killed_at - started:.0f}s SIGKILL the master ({len(load.results)} done, "
            f"usage stream length {stream_before})")  # fmt: skip
        promoted = None
        while time.monotonic() - killed_at < 60:
            if master_port() == REPLICA:
                promoted = time.monotonic() - killed_at
                break
            time.sleep(0.2)
        log(f"replica promoted after {promoted:.1f}s" if promoted else "no promotion in 60 s")
        runner.join(timeout=args.seconds + 240)
        summary = summarize(load)
        missing, doubled, waited = wait_usage(db, load.answered(), timeout=60)
        answered = summary["answered"]
        during = [r for r in load.results if killed_at <= r.started <= killed_at + (promoted or 60)]
        rows = {
            **{k: v for k, v in summary.items() if k != "first_errors"},
            "error_rate": f"{summary['error_rate'] * 100:.3f} %",
            "requests during failover": f"{len(during)} ({sum(1 for r in during if r.ok)} ok)",
            "replica promoted after": f"{promoted:.1f}s" if promoted else "never",
            "usage missing": f"{missing} of {answered}",
            "usage doubled": doubled,
            "usage caught up in": f"{waited:.1f}s",
        }
        broken = []
        if promoted is None:
            broken.append("the Sentinels did not promote the replica")
        if summary["requests"] < 100 or len(during) < 10:
            broken.append("too little load ran across the failover to measure anything")
        if summary["error_rate"] >= 0.001:
            broken.append(f"error rate {summary['error_rate']:.4%}: {summary['first_errors']}")
        if doubled:
            broken.append(f"{doubled} usage records doubled")
        return report("drill-redis: Sentinel master killed under load", rows, broken)


if __name__ == "__main__":
    sys.exit(main())
