"""Blue-green deploy drill (`make drill-deploy`).

Gateway instances behind HAProxy on loopback, a real PostgreSQL database and
a Redis of the drill's own. Under steady load (plain chat and SSE streams of
about two seconds each) traffic is switched twice, blue -> green -> blue-2:
each time a new instance is started and enabled, the old one is drained in
HAProxy (no new requests reach it), then sent SIGTERM while its streams are
still open (gunicorn stops accepting and lets them finish).

Promises: 0 failed requests, 0 cut streams, exactly one usage record per
answered request once the consumers catch up. Exits 1 when one is broken.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

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

FRONT, BLUE, GREEN, BLUE2, EMULATOR, REDIS = 27100, 27101, 27102, 27103, 27180, 27379


def haproxy_config(drill: Drill) -> str:
    path = drill.dir / "haproxy.cfg"
    path.write_text(
        f"""global
    stats socket {drill.dir}/haproxy.sock mode 600 level admin
    maxconn 4000

defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    timeout http-keep-alive 10s
    # A connection refused by an instance that just stopped listening is
    # retried on the other one (nothing was sent yet).
    retries 3
    option redispatch 1

frontend xrouter
    bind 127.0.0.1:{FRONT}
    default_backend gateways

backend gateways
    balance leastconn
    option httpchk
    # Readiness: 503 once the instance's drain file exists (XROUTER_DRAIN_FILE).
    http-check send meth GET uri /readyz hdr Host localhost
    server blue 127.0.0.1:{BLUE} check inter 1s fall 2 rise 1
    server green 127.0.0.1:{GREEN} check inter 1s fall 2 rise 1 disabled
    server blue-2 127.0.0.1:{BLUE2} check inter 1s fall 2 rise 1 disabled
""",
        encoding="utf-8",
    )
    return str(path)


def admin(drill: Drill, command: str) -> str:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(drill.dir / "haproxy.sock"))
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def server_state(drill: Drill, name: str) -> str:
    for line in admin(drill, "show servers state gateways").splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[3] == name:
            return f"op={fields[5]} admin={fields[6]}"
    return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=45)
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--admin-db", default="postgres://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    haproxy = shutil.which("haproxy") or sys.exit("haproxy is missing: apt-get install haproxy")
    redis_server = shutil.which("redis-server") or sys.exit("redis-server is not installed")

    ports = (FRONT, BLUE, GREEN, BLUE2, EMULATOR, REDIS)
    with (
        Drill("deploy", ports) as drill,
        fresh_database(args.admin_db, "xrouter_drill_deploy") as db,
    ):
        drill.start(
            "redis",
            [
                redis_server,
                "--port",
                str(REDIS),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
        )
        wait_port(REDIS, 10)
        env = base_env(drill, db, f"redis://127.0.0.1:{REDIS}/0")
        catalog = emulator(drill, EMULATOR, tokens=40, interval_ms=50)
        manage(env, "migrate", "--noinput")
        manage({**env, "XROUTER_CATALOG": catalog}, "loadcatalog")
        key = manage(env, "createapikey", "--team", "drill", "--name", "drill").splitlines()[-1]

        def drain(name: str) -> str:
            return str(drill.dir / f"draining-{name}")

        gateway(drill, "blue", BLUE, {**env, "XROUTER_DRAIN_FILE": drain("blue")}, catalog)
        drill.start("haproxy", [haproxy, "-f", haproxy_config(drill), "-db"])
        wait_port(FRONT, 10)

        load = Load(
            url=f"http://127.0.0.1:{FRONT}",
            key=key,
            clients=args.clients,
            seconds=args.seconds,
            stream_share=0.5,
        )
        started = time.monotonic()
        runner = load.run_in_background()
        stops: list[str] = []
        stoppers: list[threading.Thread] = []
        sigterms: list[tuple[str, float]] = []

        def stop_old(name: str) -> None:
            took = drill.stop(name, timeout=60)
            admin(drill, f"disable server gateways/{name}")
            stops.append(f"{name} {took:.1f}s")
            log(f"{name} drained and exited {took:.1f}s after SIGTERM")

        # (at second, new instance, old instance, how the old one leaves):
        # "admin" drains it in HAProxy (blue-green by the load balancer),
        # "readiness" creates its drain file, as the chart's preStop hook
        # does, and HAProxy's /readyz check takes it out (rolling).
        plan = [
            (args.seconds * 0.25, ("green", GREEN), ("blue", BLUE), "admin"),
            (args.seconds * 0.6, ("blue-2", BLUE2), ("green", GREEN), "readiness"),
        ]
        for at, (new, new_port), (old, _old_port), how in plan:
            if new not in drill.processes:
                gateway(drill, new, new_port, {**env, "XROUTER_DRAIN_FILE": drain(new)}, catalog)
            time.sleep(max(0.0, at - (time.monotonic() - started)))
            admin(drill, f"enable server gateways/{new}")
            admin(drill, f"set server gateways/{new} state ready")
            if how == "admin":
                admin(drill, f"set server gateways/{old} state drain")
            else:
                Path(drain(old)).touch()
                deadline = time.monotonic() + 15
                while "op=0" not in server_state(drill, old) and time.monotonic() < deadline:
                    time.sleep(0.2)
            log(
                f"+{time.monotonic() - started:.0f}s switched {old} -> {new} by {how} "
                f"({new}: {server_state(drill, new)}, {old}: {server_state(drill, old)})"
            )
            time.sleep(0.5)
            sigterms.append((old, time.monotonic()))
            stopper = threading.Thread(target=stop_old, args=(old,))
            stopper.start()
            stoppers.append(stopper)
        runner.join(timeout=args.seconds + 240)
        for thread in stoppers:
            thread.join(timeout=90)
        summary = summarize(load)
        in_flight = [
            sum(1 for r in load.results if r.stream and r.started < at < r.ended)
            for _name, at in sigterms
        ]
        missing, doubled, waited = wait_usage(db, load.answered(), timeout=60)
        rows = {
            **{k: v for k, v in summary.items() if k != "first_errors"},
            "error_rate": f"{summary['error_rate'] * 100:.3f} %",
            "switches": ", ".join(f"{o}->{n} ({how})" for _a, (n, _p), (o, _q), how in plan),
            "streams open at SIGTERM": ", ".join(
                f"{name} {n}" for (name, _at), n in zip(sigterms, in_flight, strict=True)
            ),
            "old instance stop times": ", ".join(stops),
            "usage missing": missing,
            "usage doubled": doubled,
            "usage caught up in": f"{waited:.1f}s",
        }
        broken = []
        if summary["requests"] < 50:
            broken.append(f"only {summary['requests']} requests ran: the load did not run")
        if summary["failed"]:
            broken.append(f"{summary['failed']} failed requests: {summary['first_errors']}")
        if not all(in_flight):
            broken.append(f"a switch happened with no stream open ({in_flight}): not a test")
        if summary["cut_streams"]:
            broken.append(f"{summary['cut_streams']} cut streams")
        if missing or doubled:
            broken.append(f"usage records: {missing} missing, {doubled} doubled")
        return report("drill-deploy: blue-green switch under load", rows, broken)


if __name__ == "__main__":
    sys.exit(main())
