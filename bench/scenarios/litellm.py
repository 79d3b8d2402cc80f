"""LiteLLM's proxy next to the gateway, same upstream, same load."""

from __future__ import annotations

import secrets
import subprocess
import time
from typing import Any

from context import REPO, Bench
from harness import BenchError, free_port, log, write_wrk_script
from litellm_target import DEFAULT_VENV, REQUIREMENTS, ensure_litellm_venv, start_litellm
from measure import throughput
from targets import CHAT_PATH, Target, starter

from scenarios import Scenario


@starter("litellm")
def _litellm(bench: Bench) -> Target:
    master_key = "sk-bench-" + secrets.token_hex(16)
    script = bench.wrk_script.with_name("litellm.lua")
    write_wrk_script(script, master_key)
    upstream = bench.targets["direct"].url.removesuffix(CHAT_PATH) + "/v1"
    service, url = start_litellm(bench.group, bench.workdir, upstream, master_key, free_port())
    return Target(service, url, script)


def run(bench: Bench) -> dict[str, Any]:
    """LiteLLM's proxy against the same nginx upstream with the same wrk
    load, measured right after a fresh throughput run of the gateway (as
    the features scenario pairs its variants), so both share the
    machine's state as closely as a noisy machine allows."""
    try:
        started = time.monotonic()
        python = ensure_litellm_venv(DEFAULT_VENV)
        log(f"litellm venv ready in {time.monotonic() - started:.0f}s ({python})")
    except (BenchError, OSError, subprocess.SubprocessError) as exc:
        return {"skipped": f"could not install litellm[proxy]: {exc}"}
    version = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    out: dict[str, Any] = {
        "version": version,
        "setup": (
            "`python -m litellm.proxy.proxy_cli --num_workers 2` in its own venv "
            f"(pins: `{REQUIREMENTS.relative_to(REPO)}`), master key only, no database, "
            "no callbacks, logs at ERROR (see `bench/litellm_target.py`)"
        ),
    }
    # Not the memoised figure from earlier in the run: back to back.
    bench.forget("throughput", "gateway")
    for name in ("gateway", "litellm"):
        try:
            result = throughput(bench, name)
        except BenchError as exc:
            return {**out, "skipped": f"{name} failed: {exc}"}
        cores = result["cpu_cores"]["server"]
        out[name] = {
            "rps": result["rps"],
            "non_2xx": result["non_2xx"],
            "socket_errors": result["socket_errors"],
            "avg_ms": result["latency_ms"].get("avg"),
            "server_cpu_cores": cores,
            "req_per_cpu_s": round(result["rps"] / cores, 1) if cores else None,
            "memory_after": result.get("memory_after"),
        }
    bench.stop_target("litellm")
    return out


SCENARIO = Scenario(name="litellm", order=90, run=run)
