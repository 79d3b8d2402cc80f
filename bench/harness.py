"""Process plumbing for the benchmark: tools, services, RSS and wrk.

Everything here runs on 127.0.0.1 only. Every child process is started in
its own session (process group) so that Ctrl-C in the terminal does not
kill it behind our back and so that :class:`ProcessGroup.stop_all` can stop
each one (and only the ones we started) by its own group id.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

# A fixed OpenAI chat.completion: what the static upstream answers. The
# gateway's adapter parses every field it relies on, so keep it complete.
UPSTREAM_COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-bench0000000000000000000000",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "gpt-mock",
    "system_fingerprint": "fp_bench",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hello from the bench upstream.",
                "refusal": None,
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
}

# What every load generator sends: small and the same for every target.
REQUEST_BODY: dict[str, Any] = {
    "model": "bench/mock",
    "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
    "max_tokens": 16,
}


class BenchError(RuntimeError):
    """A precondition failed; the message says what to do."""


def log(message: str) -> None:
    """Progress goes to stderr so stdout keeps only the summary."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    """Ask the kernel for a free loopback port (small race accepted: a bench
    on a private machine, and every start is checked by a readiness probe)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def raise_fd_limit() -> int:
    """Thousands of streams need thousands of descriptors; children inherit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


# --- tools ---------------------------------------------------------------------


def _apt_install(packages: Sequence[str]) -> None:
    if os.geteuid() != 0:
        raise BenchError(
            f"missing {', '.join(packages)}; install as root: "
            f"apt-get update && apt-get install -y {' '.join(packages)}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Other sessions may hold the dpkg lock for a while: wait instead of failing.
    lock_wait = ["-o", "DPkg::Lock::Timeout=300"]
    log(f"installing {' '.join(packages)} with apt-get")
    subprocess.run(
        ["apt-get", *lock_wait, "update", "-qq"], check=False, env=env, stdout=subprocess.DEVNULL
    )
    result = subprocess.run(
        ["apt-get", *lock_wait, "install", "-y", "-qq", *packages],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(f"apt-get install {' '.join(packages)} failed:\n{result.stderr[-2000:]}")


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def ensure_tools(need_py_spy: bool) -> dict[str, str]:
    """Install what is missing (idempotent) and return tool paths."""
    missing = []
    if not Path(nginx_binary()).exists():
        # nginx-light: the smallest Debian build that has `return`.
        missing.append("nginx-light")
    if not ECHO_MODULE.exists():
        # The streaming upstream (see stream_nginx_config).
        missing.append("libnginx-mod-http-echo")
    if not shutil.which("wrk"):
        missing.append("wrk")
    for tool, package in (("psql", "postgresql-client"), ("createdb", "postgresql-client")):
        if not shutil.which(tool) and package not in missing:
            missing.append(package)
    if missing:
        _apt_install(missing)
    tools = {"nginx": nginx_binary(), "wrk": shutil.which("wrk") or ""}
    if not Path(tools["nginx"]).exists() or not tools["wrk"]:
        raise BenchError("nginx or wrk is still missing after apt-get install")
    try:
        import uvloop  # noqa: F401
    except ImportError:
        # The stream driver runs on the same 2 cores as what it measures;
        # uvloop makes it cheaper (it falls back to asyncio without).
        log("installing uvloop into the venv for the stream driver")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "uvloop"],
            capture_output=True,
            check=False,
        )
    py_spy = Path(sys.executable).parent / "py-spy"
    if need_py_spy and not py_spy.exists():
        log("installing py-spy into the venv")
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "py-spy"],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            log(f"py-spy install failed, profile skipped: {result.stderr[-300:]}")
    tools["py_spy"] = str(py_spy) if py_spy.exists() else ""
    return tools


# --- processes -----------------------------------------------------------------


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    stop_signal: int
    log_path: Path
    log_file: IO[bytes]


@dataclass
class ProcessGroup:
    """Children we started; stopped in reverse order, each by its own pgid."""

    services: list[Service] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        log_path: Path,
        stop_signal: int = signal.SIGTERM,
        cwd: Path = REPO,
    ) -> Service:
        log_file = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        proc = subprocess.Popen(
            list(argv),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        service = Service(name, proc, stop_signal, log_path, log_file)
        self.services.append(service)
        return service

    def stop(self, service: Service, timeout: float = 15.0) -> None:
        proc = service.proc
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, service.stop_signal)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{service.name} did not stop in {timeout:.0f}s; killing its group")
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(5)
        else:
            # The leader is gone; make sure no worker of its group outlives it.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        service.log_file.close()
        if service in self.services:
            self.services.remove(service)

    def stop_all(self) -> None:
        for service in reversed(list(self.services)):
            try:
                self.stop(service)
            except Exception as exc:  # keep stopping the others
                log(f"stopping {service.name}: {exc}")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_http(url: str, service: Service, *, timeout: float = 60.0, method: str = "GET") -> None:
    """Wait until ``url`` answers any HTTP status (the process is serving)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            raise BenchError(
                f"{service.name} exited with {service.proc.returncode}:\n{tail(service.log_path)}"
            )
        try:
            request = urllib.request.Request(url, method=method)  # noqa: S310 - loopback
            with urllib.request.urlopen(request, timeout=2):  # noqa: S310 - loopback only
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise BenchError(
        f"{service.name} not ready at {url} after {timeout:.0f}s:\n{tail(service.log_path)}"
    )


def post_json(url: str, body: dict[str, Any], key: str, timeout: float = 10.0) -> tuple[int, bytes]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - loopback only
        url,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - loopback
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


# --- nginx ---------------------------------------------------------------------


def _nginx_conf(
    workdir: Path, name: str, port: int, location: str, *, head: str = "", connections: int
) -> str:
    """An nginx config with one worker, one server on ``port`` and the given
    ``location`` block for the chat path; everything else answers 404."""
    temp = workdir / f"{name}-tmp"
    temp.mkdir(exist_ok=True)
    return f"""# generated by bench/harness.py
{head}daemon off;
master_process on;
# One worker: the upstream must stay cheap on a 2-core box shared with the
# gateway and the load generator.
worker_processes 1;
pid {workdir}/{name}.pid;
error_log {workdir}/{name}-error.log warn;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    server {{
        listen {HOST}:{port} backlog=4096;
        location = /v1/chat/completions {{
{location}
        }}
        location / {{ return 404; }}
    }}
}}
"""


def nginx_config(workdir: Path, port: int) -> str:
    body = json.dumps(UPSTREAM_COMPLETION, separators=(",", ":"))
    # nginx string literal in single quotes: escape backslashes and quotes.
    literal = body.replace("\\", "\\\\").replace("'", "\\'")
    location = f"""            default_type application/json;
            return 200 '{literal}';"""
    return _nginx_conf(workdir, "nginx", port, location, connections=8192)


ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")


def _sse_literal(payload: dict[str, Any] | str) -> str:
    """One SSE event as an nginx double-quoted string (nginx turns ``\\n``
    into a newline inside double quotes)."""
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return '"data: ' + data.replace("\\", "\\\\").replace('"', '\\"') + '\\n\\n"'


def stream_nginx_config(workdir: Path, port: int, tokens: int, interval_ms: int) -> str:
    """nginx + the echo module as a streaming OpenAI upstream written in C.

    Every stream is the same: a role chunk at once, then ``tokens`` content
    chunks ``interval_ms`` apart, a finish chunk, a usage chunk and
    ``[DONE]``, each flushed as its own HTTP chunk. A Python emulator doing
    this for 2,000 streams takes most of a core on the 2-core machine the
    gateway is measured on; a real provider costs the gateway's host nothing.
    """

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-benchstream",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": "gpt-mock",
            "system_fingerprint": "fp_bench",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    usage = dict(chunk({}), choices=[])
    usage["usage"] = {"prompt_tokens": 12, "completion_tokens": tokens, "total_tokens": 12 + tokens}
    sleep = f"echo_sleep {interval_ms / 1000:.3f};"
    lines = [f"echo -n {_sse_literal(chunk({'role': 'assistant', 'content': ''}))};", "echo_flush;"]
    for i in range(tokens):
        lines += [
            sleep,
            f"echo -n {_sse_literal(chunk({'content': f'tok{i:03d} '}))};",
            "echo_flush;",
        ]
    lines += [
        f"echo -n {_sse_literal(chunk({}, 'stop'))};",
        f"echo -n {_sse_literal(usage)};",
        f"echo -n {_sse_literal('[DONE]')};",
    ]
    body = "\n            ".join(lines)
    location = f"""            default_type text/event-stream;
            add_header Cache-Control no-cache;
            echo_read_request_body;
            {body}"""
    head = f"load_module {ECHO_MODULE};\n"
    return _nginx_conf(workdir, "nginx-stream", port, location, head=head, connections=16384)


def _run_nginx(
    group: ProcessGroup, workdir: Path, nginx: str, name: str, port: int, config: str
) -> Service:
    conf = workdir / f"{name}.conf"
    conf.write_text(config)
    # -e: error log before the config is read (else /var/log/nginx is used).
    service = group.start(
        name,
        [nginx, "-p", str(workdir), "-e", str(workdir / f"{name}-error.log"), "-c", str(conf)],
        env=dict(os.environ),
        log_path=workdir / f"{name}.out",
        stop_signal=signal.SIGTERM,
    )
    wait_http(f"http://{HOST}:{port}/", service, timeout=15)
    return service


def start_stream_nginx(
    group: ProcessGroup,
    workdir: Path,
    nginx: str,
    tokens: int,
    interval_ms: int,
    *,
    port: int | None = None,
) -> tuple[Service, int]:
    """Start :func:`stream_nginx_config`; raises BenchError without the module."""
    if not ECHO_MODULE.exists():
        raise BenchError(f"{ECHO_MODULE} is missing (apt-get install libnginx-mod-http-echo)")
    port = port or free_port()
    config = stream_nginx_config(workdir, port, tokens, interval_ms)
    return _run_nginx(group, workdir, nginx, "nginx-stream", port, config), port


def start_nginx(group: ProcessGroup, workdir: Path, nginx: str) -> tuple[Service, int]:
    port = free_port()
    config = nginx_config(workdir, port)
    return _run_nginx(group, workdir, nginx, "nginx", port, config), port


# --- CPU and RSS ---------------------------------------------------------------


def cpu_seconds(pids: list[int]) -> float:
    """utime+stime of processes (from /proc/PID/stat), in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            # After the parenthesised command name, utime and stime are the
            # 12th and 13th fields.
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            out.extend(int(x) for x in text)
    except OSError:
        pass
    return out


def process_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo.extend(_children(current))
    return pids


def _status_kb(pid: int, field_name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Memory:
    processes: int
    rss_mb: float  # sum of RSS: counts pages shared by master and workers twice
    pss_mb: float  # sum of PSS: shared pages split between sharers (closest to real cost)
    per_process_mb: list[float]

    def as_dict(self) -> dict[str, Any]:
        return {
            "processes": self.processes,
            "rss_mb": self.rss_mb,
            "pss_mb": self.pss_mb,
            "per_process_rss_mb": self.per_process_mb,
        }


def memory_of(pid: int) -> Memory:
    pids = process_tree(pid)
    rss = [_status_kb(p, "VmRSS") for p in pids]
    pss = [_pss_kb(p) for p in pids]
    return Memory(
        processes=len(pids),
        rss_mb=round(sum(rss) / 1024, 1),
        pss_mb=round(sum(pss) / 1024, 1),
        per_process_mb=[round(r / 1024, 1) for r in rss],
    )


def gunicorn_workers(master_pid: int) -> list[int]:
    return _children(master_pid)


# --- wrk -----------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        return float("nan")
    return float(match.group(1)) * _UNITS[match.group(2)]


def write_wrk_script(path: Path, key: str) -> None:
    body = json.dumps(REQUEST_BODY, separators=(",", ":"))
    # Lua long strings ([==[ ... ]==]) need no escaping for JSON or the key.
    path.write_text(
        "-- generated by bench/harness.py: one fixed POST for every request\n"
        'wrk.method = "POST"\n'
        f"wrk.body = [==[{body}]==]\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = [==[Bearer {key}]==]\n'
    )


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    non_2xx: int
    socket_errors: int
    latency_ms: dict[str, float]
    raw: str

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "seconds": self.seconds,
            "rps": self.rps,
            "non_2xx": self.non_2xx,
            "socket_errors": self.socket_errors,
            "latency_ms": self.latency_ms,
        }


def parse_wrk(text: str) -> WrkResult:
    requests = seconds = 0.0
    match = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if match:
        requests = float(match.group(1))
        seconds = _duration_ms(match.group(2) + match.group(3)) / 1000
    rps_match = re.search(r"Requests/sec:\s+([\d.]+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    socket_errors = 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if sock:
        socket_errors = sum(int(x) for x in sock.groups())
    latency: dict[str, float] = {}
    avg = re.search(r"Latency\s+([\d.]+\w+)\s+([\d.]+\w+)\s+([\d.]+\w+)", text)
    if avg:
        latency["avg"] = _duration_ms(avg.group(1))
        latency["max"] = _duration_ms(avg.group(3))
    for pct, value in re.findall(r"^\s+(\d+)%\s+([\d.]+\w+)\s*$", text, re.MULTILINE):
        latency[f"p{pct}"] = _duration_ms(value)
    return WrkResult(
        requests=int(requests),
        seconds=round(seconds, 2),
        rps=float(rps_match.group(1)) if rps_match else 0.0,
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=socket_errors,
        latency_ms=latency,
        raw=text,
    )


def run_wrk(
    wrk: str,
    url: str,
    script: Path,
    *,
    connections: int,
    threads: int,
    seconds: float,
    latency: bool = False,
) -> WrkResult:
    if not url.startswith(f"http://{HOST}:"):
        raise BenchError(f"refusing to load a non-loopback target: {url}")
    argv = [
        wrk,
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
    ]
    if latency:
        argv.append("--latency")
    argv.append(url)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if result.returncode != 0:
        raise BenchError(f"wrk failed ({result.returncode}): {result.stderr[-500:]}")
    return parse_wrk(result.stdout)


def run_json_driver(argv: Sequence[str], timeout: float) -> dict[str, Any]:
    """Run one of our Python load drivers; it prints one JSON object."""
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise BenchError(f"{argv[1]} failed ({result.returncode}): {result.stderr[-1500:]}")
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed
