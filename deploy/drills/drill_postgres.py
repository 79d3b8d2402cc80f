"""HA PostgreSQL drill (`make drill-postgres`).

Patroni (Debian's `patroni`) with etcd (`etcd-server`) runs a primary and a
replica of PostgreSQL 15 on loopback. The gateway reaches them through a
libpq host list, ``postgres://...@127.0.0.1:27432,127.0.0.1:27433/xrouter
?target_session_attrs=read-write``, and serves steady load (plain chat and
SSE streams) while the primary's node dies: its Patroni and PostgreSQL are
SIGKILLed. The replica is promoted once the leader key expires.

Promises: the error rate of /v1/ stays below 0.1 % (the hot path needs no
database: keys come from the cache, usage goes through the Redis stream);
every answered request has exactly one usage record once the consumer
catches up; the time to a writable primary is printed. Exits 1 when a
promise is broken.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
import requests
from common import (
    Drill,
    Load,
    base_env,
    emulator,
    gateway,
    log,
    manage,
    report,
    summarize,
    wait_port,
    wait_usage,
)

ETCD, ETCD_PEER = 27479, 27480
PG = {"pg1": (27432, 27008), "pg2": (27433, 27009)}
REDIS, EMULATOR, GATEWAY = 27380, 27181, 27110
SCOPE = "xrouter-drill"
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def patroni_config(work: Path, name: str, pg_port: int, rest_port: int) -> Path:
    path = work / f"{name}.yml"
    path.write_text(
        f"""scope: {SCOPE}
name: {name}
log:
  level: WARNING
restapi:
  listen: 127.0.0.1:{rest_port}
  connect_address: 127.0.0.1:{rest_port}
etcd:
  host: 127.0.0.1:{ETCD}
bootstrap:
  dcs:
    # The leader key lives 10 s: a dead primary is replaced within about that.
    ttl: 10
    loop_wait: 1
    retry_timeout: 4
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        max_wal_senders: 5
        max_replication_slots: 5
        wal_log_hints: "on"
  initdb:
    - encoding: UTF8
    - auth: trust
  pg_hba:
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
    - local all all trust
postgresql:
  listen: 127.0.0.1:{pg_port}
  connect_address: 127.0.0.1:{pg_port}
  data_dir: {work}/{name}
  bin_dir: {PG_BIN}
  pgpass: {work}/{name}.pgpass
  authentication:
    superuser: {{username: postgres}}
    replication: {{username: postgres}}
  parameters:
    unix_socket_directories: {work}
""",
        encoding="utf-8",
    )
    return path


def role(rest_port: int) -> str:
    with contextlib.suppress(requests.RequestException):
        if requests.get(f"http://127.0.0.1:{rest_port}/primary", timeout=1).status_code == 200:
            return "primary"
        if requests.get(f"http://127.0.0.1:{rest_port}/replica", timeout=1).status_code == 200:
            return "replica"
    return "down"


def wait_role(rest_port: int, wanted: str, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if role(rest_port) == wanted:
            return time.monotonic() - start
        time.sleep(0.2)
    raise RuntimeError(f"the node on {rest_port} is not {wanted} after {timeout:.0f}s")


def writable(dsn: str) -> bool:
    try:
        with contextlib.closing(psycopg2.connect(dsn, connect_timeout=1)) as conn:
            with conn.cursor() as cursor:
                cursor.execute("CREATE TEMP TABLE drill_probe (x int)")
        return True
    except psycopg2.Error:
        return False


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=50)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--kill-at", type=float, default=15)
    args = parser.parse_args()
    for tool in ("patroni", "etcd", "redis-server"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: make drill-postgres installs it")
    postgres_user = pwd.getpwnam("postgres")

    ports = (ETCD, ETCD_PEER, REDIS, EMULATOR, GATEWAY, *[p for pair in PG.values() for p in pair])
    with Drill("postgres", ports) as drill:
        # PostgreSQL refuses to run as root: the cluster belongs to `postgres`.
        work = Path(tempfile.mkdtemp(prefix="xrouter-drill-postgres-"))
        os.chown(work, postgres_user.pw_uid, postgres_user.pw_gid)
        drill.cleanups.append(lambda: shutil.rmtree(work, ignore_errors=True))

        drill.start("etcd", [
            "etcd", "--name", "drill", "--data-dir", str(work / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{ETCD}",
            "--advertise-client-urls", f"http://127.0.0.1:{ETCD}",
            "--listen-peer-urls", f"http://127.0.0.1:{ETCD_PEER}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{ETCD_PEER}",
            "--initial-cluster", f"drill=http://127.0.0.1:{ETCD_PEER}",
            "--enable-v2=true",
        ])  # fmt: skip
        wait_port(ETCD, 20)
        for name, (pg_port, rest_port) in PG.items():
            config = patroni_config(work, name, pg_port, rest_port)
            os.chown(config, postgres_user.pw_uid, postgres_user.pw_gid)
            drill.start(name, ["runuser", "-u", "postgres", "--", "patroni", str(config)], cwd=work)
            wait_role(rest_port, "primary" if name == "pg1" else "replica", 120)
            log(f"{name}: {role(rest_port)} on 127.0.0.1:{pg_port}")

        admin = psycopg2.connect(host="127.0.0.1", port=PG["pg1"][0], user="postgres",
                                 dbname="postgres")  # fmt: skip
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute("CREATE DATABASE xrouter")
        admin.close()
        hosts = ",".join(f"127.0.0.1:{pg}" for pg, _rest in PG.values())
        database_url = f"postgres://postgres@{hosts}/xrouter?target_session_attrs=read-write"
        libpq_dsn = (
            f"host=127.0.0.1,127.0.0.1 port={PG['pg1'][0]},{PG['pg2'][0]} user=postgres "
            "dbname=xrouter target_session_attrs=read-write"
        )

        drill.start("redis", ["redis-server", "--port", str(REDIS), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no"])  # fmt: skip
        wait_port(REDIS, 10)
        env = base_env(drill, database_url, f"redis://127.0.0.1:{REDIS}/0")
        catalog = emulator(drill, EMULATOR, tokens=20, interval_ms=50)
        manage(env, "migrate", "--noinput")
        manage({**env, "XROUTER_CATALOG": catalog}, "loadcatalog")
        key = manage(env, "createapikey", "--team", "drill", "--name", "drill").splitlines()[-1]
        gateway(drill, "gateway", GATEWAY, env, catalog, workers=2)

        load = Load(url=f"http://127.0.0.1:{GATEWAY}", key=key, clients=args.clients,
                    seconds=args.seconds)  # fmt: skip
        started = time.monotonic()
        runner = load.run_in_background()
        time.sleep(args.kill_at)
        before = len(load.results)
        killed_at = time.monotonic()
        postmaster = int((work / "pg1" / "postmaster.pid").read_text().split()[0])
        drill.stop("pg1", sig=signal.SIGKILL, timeout=5)
        # The node dies whole: PostgreSQL too, even outside Patroni's group.
        with contextlib.suppress(ProcessLookupError):
            os.kill(postmaster, signal.SIGKILL)
        log(f"+{killed_at - started:.0f}s SIGKILL pg1 (Patroni and PostgreSQL); {before} done")
        promoted = wait_role(PG["pg2"][1], "primary", 60)
        while not writable(libpq_dsn) and time.monotonic() - killed_at < 90:
            time.sleep(0.2)
        recovered = time.monotonic() - killed_at
        log(f"pg2 primary after {promoted:.1f}s; writable through the host list after "
            f"{recovered:.1f}s")  # fmt: skip
        runner.join(timeout=args.seconds + 240)
        summary = summarize(load)
        missing, doubled, waited = wait_usage(libpq_dsn, load.answered(), timeout=90)
        during = [r for r in load.results if killed_at <= r.started <= killed_at + recovered]
        rows = {
            **{k: v for k, v in summary.items() if k != "first_errors"},
            "error_rate": f"{summary['error_rate'] * 100:.3f} %",
            "requests during failover": f"{len(during)} ({sum(1 for r in during if r.ok)} ok)",
            "replica promoted after": f"{promoted:.1f}s",
            "writable primary after": f"{recovered:.1f}s",
            "usage missing": missing,
            "usage doubled": doubled,
            "usage caught up in": f"{waited:.1f}s",
        }
        broken = []
        if summary["requests"] < 100 or len(during) < 10:
            broken.append("too little load ran across the failover to measure anything")
        if summary["error_rate"] >= 0.001:
            broken.append(f"error rate {summary['error_rate']:.4%}: {summary['first_errors']}")
        if summary["cut_streams"]:
            broken.append(f"{summary['cut_streams']} cut streams")
        if missing or doubled:
            broken.append(f"usage records: {missing} missing, {doubled} doubled")
        return report("drill-postgres: Patroni primary killed under load", rows, broken)


if __name__ == "__main__":
    sys.exit(main())
