"""Render a run's results as ``bench/RESULTS.md`` and a stdout summary.

The hand-written analysis between the ``analysis`` markers of an existing
RESULTS.md is kept across runs (it explains the numbers; the tables are
regenerated), so re-running the bench never loses it.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ANALYSIS_START = "<!-- analysis:start -->"
ANALYSIS_END = "<!-- analysis:end -->"

# Issue 2's note: same machine size, measured earlier by another session.
REF_BARE_DJANGO_RPS = 1500
REF_BARE_DJANGO_RSS_MB = 130
REF_LITELLM_RPS = 190


def _git(*argv: str) -> str:
    result = subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True, check=False)
    return result.stdout.strip()


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    dirty = _git("status", "--porcelain")
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem_gib,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": _git("rev-parse", "--short", "HEAD") or "unknown",
        "dirty": "yes (uncommitted changes in the tree)" if dirty else "no",
    }


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "–"
    return f"{a / b:.2f}×"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out.extend("| " + " | ".join(row) + " |" for row in rows)
    return out


LABELS = {
    "direct": "nginx upstream, direct",
    "gateway": "XRouter gateway (access log on, production config)",
    "gateway_nolog": "XRouter gateway, XROUTER_ACCESS_LOG=false",
    "gateway_limits": "XRouter gateway, key with rpm/tpm/concurrency limits",
    "gateway_lean": "XRouter gateway, usage records and metrics off",
    "bare": "bare WSGI proxy (bench/bare_proxy.py)",
    "gateway_requests": "XRouter gateway, XROUTER_UPSTREAM_CLIENT=requests (the previous client)",
}


def _workers_cpu(cpu: dict[str, Any]) -> str:
    """ " (w1 + w2)" for gunicorn targets: shows an uneven connection split."""
    per = cpu.get("per_process") or []
    if len(per) < 3:
        return ""
    return " (" + " + ".join(_f(x, 2) for x in per[1:]) + ")"


def _per_core(d: dict[str, Any]) -> float | None:
    """Requests per CPU-second the server itself used: unlike req/s, this
    barely moves when other work on the machine takes CPU from the server."""
    cpu = d.get("cpu_cores") or {}
    server = cpu.get("server")
    return d["rps"] / server if server else None


def _per_core_all(d: dict[str, Any]) -> float | None:
    """Requests per CPU-second of the server plus PostgreSQL and Redis."""
    cpu = d.get("cpu_cores") or {}
    total = (cpu.get("server") or 0) + (cpu.get("postgres_redis") or 0)
    return d["rps"] / total if total else None


def _throughput_rows(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    s = results["scenarios"]
    rows: dict[str, dict[str, Any]] = {}
    for source in (s.get("throughput", {}), s.get("baseline", {}).get("throughput", {})):
        for name, data in source.items():
            rows.setdefault(name, data)
    return rows


TTFT_TARGET_MS = 20.0


ADDED = ("added p50 ms", "added p99 ms")


def _percentiles(lat: dict[str, float], keys: tuple[str, ...]) -> list[str]:
    return [_f(lat.get(key), 2) for key in keys]


def _latency_rows(
    runs: dict[str, Any], cells: Callable[[dict[str, Any], dict[str, float], list[str]], list[str]]
) -> list[list[str]]:
    """One row per target of a latency table: its label, then ``cells`` of
    (its figures, its latency_ms, its added p50/p99 over nginx direct)."""
    base = runs.get("direct", {}).get("latency_ms", {})
    rows = []
    for name in ("direct", "bare", "gateway"):
        if name in runs:
            lat = runs[name]["latency_ms"]
            rows.append([LABELS[name], *cells(runs[name], lat, _added_latency(lat, base, name))])
    return rows


def _added_latency(lat: dict[str, float], base: dict[str, float], name: str) -> list[str]:
    """p50 and p99 of ``lat`` over the direct-to-upstream ``base``."""
    if not base or name == "direct":
        return ["–", "–"]
    return [_f(lat.get(p, 0) - base.get(p, 0), 2) for p in ("p50", "p99")]


def _rerun_note(section: dict[str, Any]) -> list[str]:
    """Say so when a section was measured in a run of its own and merged in."""
    rerun = section.get("rerun")
    if not rerun:
        return []
    return [
        f"Measured in a separate run (`{rerun['command']}`, started {rerun['started']}, "
        f"Python yardstick {_f(rerun.get('yardstick_ms'))} ms); the other tables come "
        "from the run above.",
        "",
    ]


def _skipped(name: str, md: list[str], section: dict[str, Any]) -> tuple[list[str], list[str]]:
    """A section whose scenario did not run: its title and why."""
    reason = section["skipped"]
    return md + [f"Skipped: {reason}", ""], [f"{name}: skipped ({reason})"]


def _stream_section(s: dict[str, Any]) -> tuple[list[str], list[str]]:
    st = s.get("stream")
    if not st:
        return [], []
    md = ["## Streaming (SSE through the gateway vs direct to the upstream)", ""]
    if "skipped" in st:
        return _skipped("stream", md, st)
    upstream = (
        "nginx with the echo module (C; `bench/harness.py:stream_nginx_config`)"
        if st.get("upstream") == "nginx"
        else "the Python emulator (`python -m providers.emulators openai`)"
    )
    md += [
        f"Each stream: a role chunk, {st['stream_tokens']} content chunks "
        f"{st['chunk_interval_ms']} ms apart, a finish chunk, a usage chunk and `[DONE]`, "
        f"from {upstream}. The streams of a level open evenly over {st['ramp_s']} s "
        "(see `stream_ramp`); TTFT = connect started to first `data:` event. Per level the "
        "direct run and the gateway run go back to back.",
        "",
    ]
    rows = []
    met: list[int] = []
    heads: list[str] = []
    for level in st["levels"]:
        d, g = level["direct"], level["gateway"]
        over99 = g["ttft_ms"]["p99"] - d["ttft_ms"]["p99"]
        if g["completed"] == g["streams"] and over99 <= TTFT_TARGET_MS:
            met.append(level["streams"])
        for label, r in (("direct", d), ("gateway", g)):
            cpu = r.get("cpu_cores") or {}
            rows.append(
                [
                    f"{level['streams']:,} {label}",
                    f"{r['completed']}/{r['streams']}",
                    ", ".join(f"{k}: {v}" for k, v in r["failures"].items()) or "0",
                    str(r["open_max"]),
                    _f(r["ttft_ms"]["p50"], 2),
                    _f(r["ttft_ms"]["p99"], 2),
                    _f(over99, 2) if label == "gateway" else "–",
                    _f(r["total_ms"]["p99"], 0),
                    _f(cpu.get("gateway"), 2),
                    _f(cpu.get("upstream"), 2),
                    _f(cpu.get("driver"), 2),
                    _f(r.get("machine_busy_cores"), 2),
                    _f(r.get("gateway_cpu_us_per_event")),
                    _f(r.get("rss_peak_mb")),
                    _f(r.get("pss_peak_mb")),
                ]
            )
    md += _table(
        [
            "streams, path",
            "completed",
            "failures",
            "max open",
            "TTFT p50 ms",
            "TTFT p99 ms",
            "TTFT overhead p99 ms",
            "stream p99 ms",
            "gateway CPU (cores)",
            "upstream CPU",
            "driver CPU",
            "machine busy (cores)",
            "gateway CPU µs / event",
            "gateway peak RSS MB",
            "gateway peak PSS MB",
        ],
        rows,
    )
    top = st["levels"][-1]
    g, d = top["gateway"], top["direct"]
    md += [
        "",
        f"- Largest level with every stream complete and TTFT overhead p99 <= "
        f"{TTFT_TARGET_MS:.0f} ms: {max(met):,} streams"
        if met
        else f"- No level met TTFT overhead p99 <= {TTFT_TARGET_MS:.0f} ms",
        "- Memory caps apply to the RSS sum of all gateway processes (issue 10: 200 MB); "
        "PSS splits the pages master and workers share.",
        "",
    ]
    heads.append(
        f"stream: at {top['streams']:,} streams {g['completed']}/{g['streams']} complete, TTFT "
        f"overhead p99 {_f(g['ttft_ms']['p99'] - d['ttft_ms']['p99'], 1)} ms, peak RSS "
        f"{_f(g.get('rss_peak_mb'))} MB; target met up to "
        f"{max(met) if met else 0:,} streams"
    )
    return md, heads


def _workers_section(s: dict[str, Any]) -> tuple[list[str], list[str]]:
    w = s.get("workers")
    if not w:
        return [], []
    md = ["## Worker model: gevent vs gthread (mixed load)", ""]
    if "skipped" in w:
        return _skipped("workers", md, w)
    md += [
        f"{w['streams']} SSE streams held open while wrk sends short requests on "
        f"{w['connections']} connections; the same gateway, 2 workers each, gthread with "
        f"{w['threads_per_worker']} threads per worker.",
        "",
    ]
    rows = []
    for kind in ("gevent", "gthread"):
        r = w.get(kind)
        if not r:
            continue
        req, st = r["requests"], r["streams"]
        rows.append(
            [
                kind,
                _f(req.get("rps"), 0),
                _f((req.get("latency_ms") or {}).get("p50"), 2),
                _f((req.get("latency_ms") or {}).get("p99"), 2),
                f"{req.get('non_2xx', 0)} / {req.get('socket_errors', 0)}",
                f"{st.get('completed', 0)}/{st.get('streams', 0)}",
                _f((st.get("ttft_ms") or {}).get("p99"), 1),
                _f(r.get("server_cpu_cores"), 2),
                _f(st.get("rss_peak_mb")),
            ]
        )
    md += _table(
        [
            "worker",
            "short req/s",
            "p50 ms",
            "p99 ms",
            "non-2xx / socket errors",
            "streams completed",
            "stream TTFT p99 ms",
            "server CPU (cores)",
            "peak RSS MB",
        ],
        rows,
    )
    md.append("")
    heads = []
    if "gevent" in w and "gthread" in w:
        heads.append(
            f"workers: gevent {_f(w['gevent']['requests'].get('rps'), 0)} req/s vs gthread "
            f"{_f(w['gthread']['requests'].get('rps'), 0)} req/s with {w['streams']} streams open"
        )
    return md, heads


def _litellm_section(s: dict[str, Any]) -> tuple[list[str], list[str]]:
    lt = s.get("litellm")
    if not lt:
        return [], []
    md = ["## LiteLLM proxy side by side (wrk, 64 connections, same nginx upstream)", ""]
    md += _rerun_note(lt)
    if "skipped" in lt:
        return _skipped("litellm", md, lt)
    rows = []
    for label, key in (("XRouter gateway", "gateway"), (f"LiteLLM {lt['version']}", "litellm")):
        r = lt[key]
        rows.append(
            [
                label,
                _f(r["rps"], 0),
                f"{r['non_2xx']} / {r['socket_errors']}",
                _f(r["avg_ms"], 2),
                _f(r.get("server_cpu_cores"), 2),
                _f(r.get("req_per_cpu_s"), 0),
                _f((r.get("memory_after") or {}).get("rss_mb")),
            ]
        )
    md += _table(
        [
            "target",
            "req/s",
            "non-2xx / socket errors",
            "avg ms",
            "server CPU (cores)",
            "req per server CPU-s",
            "RSS after MB",
        ],
        rows,
    )
    ratio = lt["gateway"]["rps"] / lt["litellm"]["rps"] if lt["litellm"]["rps"] else None
    md += ["", f"- XRouter / LiteLLM = {_f(ratio, 2)}× in req/s (issue 10: >= 5×)"]
    md += [f"- LiteLLM set-up: {lt.get('setup', '')}", ""]
    return md, [f"litellm: XRouter / LiteLLM = {_f(ratio, 2)}× req/s"]


def _scale_section(s: dict[str, Any]) -> tuple[list[str], list[str]]:
    scale = s.get("scale")
    if not scale:
        return [], []
    md = ["## Scale: how cost grows with work (issue 19)", ""]
    heads: list[str] = []
    keys, seed_usage = scale.get("seed_keys", {}), scale.get("seed_usage", {})
    md += [
        f"Data: {keys.get('keys', 0):,} API keys in {keys.get('teams')} teams "
        f"(traffic over {keys.get('traffic_keys', 0):,} of them); "
        f"{seed_usage.get('rows', 0):,} seeded usage rows over {seed_usage.get('days')} days, "
        f"{scale.get('team', {}).get('team_rows', 0):,} of them in the dashboard's team "
        f"({scale.get('team', {}).get('team_keys', 0):,} keys). Inserted once by "
        "`bench/scale_seed.py` (`INSERT ... SELECT` over `generate_series` inside "
        "PostgreSQL) and kept in the bench database; this run inserted "
        f"{keys.get('created_now', 0):,} keys in {keys.get('seconds')} s and "
        f"{seed_usage.get('inserted_now', 0):,} rows in {seed_usage.get('seconds')} s.",
        "",
    ]
    rows = []
    for name, what in (
        ("many_keys", "traffic over 10,000 of 100,000 keys vs one key"),
        ("big_catalog", "1,000 models x 3 deployments (traffic over all) vs the 2-model catalog"),
    ):
        d = scale.get(name)
        if not d:
            continue
        ok = d.get("ratio") is not None and d["ratio"] >= d["target"]
        rows.append(
            [
                what,
                _f(d["rps"], 0),
                _f(d["base_rps"], 0),
                f"{_f(d.get('ratio'), 2)}×",
                f"{_f(d.get('per_cpu_ratio'), 2)}×",
                str(d.get("errors")),
                f">= {d['target']}× " + ("met" if ok else "**not met**"),
            ]
        )
        heads.append(f"scale {name}: {_f(d.get('ratio'), 2)}× (target {d['target']}×)")
    md += _table(
        ["comparison", "req/s", "base req/s", "ratio", "per server CPU-s", "errors", "target"],
        rows,
    )
    md += ["", "Pages over the seeded usage rows (median and worst of the repeats):", ""]
    page_rows = [
        [
            name,
            f"`{p['path'][:60]}`",
            str(p["status"]),
            _f(p["median_ms"], 1),
            _f(p["max_ms"], 1),
            "met" if p["met"] else "**not met**",
        ]
        for name, p in (scale.get("pages") or {}).items()
    ]
    md += _table(["page", "path", "status", "median ms", "max ms", "< 200 ms"], page_rows)
    slow = [n for n, p in (scale.get("pages") or {}).items() if not p["met"]]
    heads.append("scale pages: all < 200 ms" if not slow else f"scale pages over 200 ms: {slow}")
    rollup = scale.get("rollup") or {}
    recent = rollup.get("recent") or []
    if recent:
        records = sum(r.get("records") or 0 for r in recent)
        rows_out = sum(r.get("rows") or 0 for r in recent)
        md += [
            "",
            f"Roll-up job: `usage_rollup_recent` (the periodic task: today and yesterday, "
            f"{records:,} raw records into {rows_out:,} daily rows) took "
            f"{_f(rollup.get('recent_s'), 1)} s in the scenario's process, i.e. about "
            f"{_f(rollup.get('recent_s', 0) * 1e6 / records if records else None, 0)} us per "
            "raw record, on the loaded 2 cores.",
        ]
        backfill = rollup.get("backfilled_now") or []
        if backfill:
            md += [
                f"This run also back-filled {len(backfill)} older days once "
                f"({_f(sum(b['seconds'] for b in backfill), 0)} s).",
            ]
    md += [""]
    return md, heads


def _soak_section(s: dict[str, Any]) -> tuple[list[str], list[str]]:
    sk = s.get("soak")
    if not sk:
        return [], []
    driver = sk.get("driver", "open loop")
    md = [f"## Soak ({sk['rate']:.0f} req/s, {driver}, for {sk['duration_s']:.0f} s)", ""]
    md += _rerun_note(sk)
    if "stale_connections_dropped" in sk:
        md += [
            f"Idle keep-alive connections the gateway had closed (after gunicorn's keepalive) "
            f"and the driver did not reuse: {sk['stale_connections_dropped']}.",
            "",
        ]
    errors = sk.get("failed", sk.get("errors", 0))
    md += _table(
        [
            "completed",
            "errors + non-2xx",
            "p50 ms",
            "p99 ms",
            "RSS first MB",
            "RSS at 60 s MB",
            "RSS end MB",
            "RSS max MB",
            "growth after 60 s",
        ],
        [
            [
                f"{sk.get('completed', 0):,}",
                _f(errors),
                _f(sk["latency_ms"]["p50"], 2),
                _f(sk["latency_ms"]["p99"], 2),
                _f(sk.get("rss_first_mb")),
                _f(sk.get("rss_warm_mb")),
                _f(sk.get("rss_end_mb")),
                _f(sk.get("rss_max_mb")),
                f"{_f(sk.get('rss_growth_pct'))}% (PSS {_f(sk.get('pss_growth_pct'))}%)",
            ]
        ],
    )
    samples = sk.get("memory_samples") or []
    if samples:
        every = max(1, len(samples) // 10)
        md += [
            "",
            "RSS sum over time (s: MB): "
            + ", ".join(f"{m['t_s']:.0f}: {m['rss_mb']:.0f}" for m in samples[::every]),
        ]
    md.append("")
    return md, [
        f"soak: {sk.get('completed', 0):,} requests, {errors} errors, RSS growth after the "
        f"first minute {_f(sk.get('rss_growth_pct'))}%"
    ]


def render(results: dict[str, Any], info: dict[str, str], analysis: str) -> tuple[str, list[str]]:
    s = results["scenarios"]
    md: list[str] = ["# XRouter benchmark results (bench v1)", ""]
    headline: list[str] = []
    load_before = ", ".join(f"{x:.2f}" for x in results.get("load_before", []))
    load_after = ", ".join(f"{x:.2f}" for x in results.get("load_after", []))
    if results.get("quick"):
        md += [
            "**A `--quick` smoke run**: every duration and count cut to seconds. It shows "
            "that the scenarios run; its figures measure nothing.",
            "",
        ]
    md += [
        f"- **Date**: {results.get('started', '?')} (UTC), run took {results.get('elapsed_s')} s",
        f"- **Command**: `{results.get('command', 'python bench/run.py')}` "
        "(from the repo root; `make bench` runs the same)",
        f"- **Commit**: `{info['commit']}`, dirty tree: {info['dirty']}; gateway code measured: "
        f"{results.get('source', 'working tree')}",
        f"- **Machine**: {info['nproc']} CPUs ({info['cpu']}), {info['memory']} RAM, "
        f"Linux {info['kernel']}, Python {info['python']}; Python yardstick "
        f"`sum(range(10**6))` = {_f(results.get('yardstick_ms'))} ms (best of 5, at the start: "
        "lower is faster; compare runs on different machines with it)",
        f"- **Load average** (1/5/15 min) before: {load_before}; after: {load_after} "
        "(other sessions' test suites may share these 2 cores: compare ratios, not absolutes)",
        "- **Set-up**: nginx (1 worker) returns a fixed `chat.completion`; the gateway runs under "
        "gunicorn with `deploy/gunicorn.conf.py` (2 gevent workers) against PostgreSQL "
        # Runs saved before --database-url/--redis-url used these two.
        f"(`{results.get('database', 'xr_bench')}`) and Redis (db {results.get('redis_db', 11)}); "
        "wrk, the Python drivers, nginx and the gateway all "
        "share the same 2 cores.",
        "",
    ]

    tp = _throughput_rows(results)
    if tp:
        direct = tp.get("direct", {}).get("rps")
        md += [
            "## Throughput (wrk, 64 connections, 2 threads, "
            f"{_f(tp.get('gateway', tp.get('direct', {})).get('seconds'))} s after a warm-up)",
            "",
        ]
        rows = []
        for name in ("direct", "bare", "gateway", "gateway_nolog", "gateway_requests"):
            if name not in tp:
                continue
            d = tp[name]
            cpu = d.get("cpu_cores", {})
            rows.append(
                [
                    LABELS[name],
                    _f(d["rps"], 0),
                    _f(d["requests"]),
                    f"{d['non_2xx']} / {d['socket_errors']}",
                    _f(d["latency_ms"].get("avg"), 2),
                    _f(cpu.get("server"), 2) + _workers_cpu(cpu),
                    _f(_per_core(d), 0),
                    _f(cpu.get("postgres_redis"), 2),
                    _f(cpu.get("wrk"), 2),
                    _f(cpu.get("machine_busy"), 2),
                    _f(d.get("busy_after_load_s"), 1),
                    _ratio(d["rps"], direct) if name != "direct" else "1.00×",
                ]
            )
        md += _table(
            [
                "target",
                "req/s",
                "requests",
                "non-2xx / socket errors",
                "avg ms",
                "server CPU, cores (per worker)",
                "req per server CPU-s",
                "PostgreSQL + Redis CPU (cores)",
                "wrk CPU (cores)",
                "machine busy (cores, all processes)",
                "server busy after load (s)",
                "vs direct",
            ],
            rows,
        )
        gw = tp.get("gateway", {}).get("rps")
        ratios = []
        if gw and tp.get("bare"):
            ratios.append(f"gateway / bare proxy = {_ratio(gw, tp['bare']['rps'])}")
        if gw and tp.get("bare") and _per_core(tp["gateway"]) and _per_core(tp["bare"]):
            ratios.append(
                "gateway / bare proxy per server CPU-second = "
                f"{_ratio(_per_core(tp['gateway']), _per_core(tp['bare']))} "
                "(the noise-robust cost of the gateway's features); counting PostgreSQL and "
                f"Redis CPU too: {_ratio(_per_core_all(tp['gateway']), _per_core_all(tp['bare']))}"
            )
        if gw and tp.get("gateway_nolog"):
            ratios.append(
                f"access log on / off = {_ratio(gw, tp['gateway_nolog']['rps'])} in req/s, "
                f"{_ratio(_per_core(tp['gateway']), _per_core(tp['gateway_nolog']))} "
                "per server CPU-second"
            )
        if gw and tp.get("gateway_requests"):
            ratios.append(
                "upstream client wire / requests = "
                f"{_ratio(gw, tp['gateway_requests']['rps'])} in req/s, "
                f"{_ratio(_per_core(tp['gateway']), _per_core(tp['gateway_requests']))} "
                "per server CPU-second (issue 19: the wire client serves non-stream calls "
                "only if this is above 1)"
            )
        if gw:
            ratios.append(
                f"gateway / issue 2's bare Django reference ({REF_BARE_DJANGO_RPS} req/s)"
                f" = {_ratio(gw, REF_BARE_DJANGO_RPS)}"
            )
            if not (s.get("litellm") or {}).get("litellm"):
                ratios.append(
                    f"gateway / LiteLLM reference ({REF_LITELLM_RPS} req/s, not measured in "
                    f"this run) = {_ratio(gw, REF_LITELLM_RPS)}"
                )
            else:
                ratios.append("gateway / LiteLLM: measured in this run, see its section below")
            headline.append(
                f"throughput: gateway {_f(gw, 0)} req/s, nginx direct {_f(direct, 0)}"
                f" req/s"
                + (
                    f", bare proxy {_f(tp['bare']['rps'], 0)} req/s "
                    f"(gateway/bare {_ratio(gw, tp['bare']['rps'])})"
                    if tp.get("bare")
                    else ""
                )
                + (
                    f", access log off {_f(tp['gateway_nolog']['rps'], 0)} req/s"
                    if tp.get("gateway_nolog")
                    else ""
                )
                + f"; errors {tp['gateway']['non_2xx'] + tp['gateway']['socket_errors']}"
            )
        md += ["", *(f"- {r}" for r in ratios), ""]

    features = s.get("features", {})
    if features:
        md += [
            "## What features cost (wrk, 64 connections; each pair measured back to back)",
            "",
        ]
        rows = []
        targets = {
            "gateway_limits": ("limits: rpm + tpm + concurrency on the key", "issue 5: <= 15%"),
            "gateway_lean": ("usage records + metrics", "issue 9: <= 10%"),
        }
        for variant, (what, target) in targets.items():
            pair = features.get(variant)
            if not pair:
                continue
            on, off = (pair["gateway"], pair[variant])
            if variant == "gateway_limits":
                on, off = off, on  # the variant is the feature turned on
            cost_rps = 1 - on["rps"] / off["rps"] if off["rps"] else None
            on_core, off_core = _per_core(on), _per_core(off)
            cost_core = 1 - on_core / off_core if on_core and off_core else None
            rows.append(
                [
                    what,
                    _f(on["rps"], 0),
                    _f(off["rps"], 0),
                    f"{cost_rps:.1%}" if cost_rps is not None else "–",
                    _f(on_core, 0),
                    _f(off_core, 0),
                    f"{cost_core:.1%}" if cost_core is not None else "–",
                    target,
                ]
            )
        md += _table(
            [
                "feature",
                "req/s on",
                "req/s off",
                "cost in req/s",
                "req per CPU-s on",
                "req per CPU-s off",
                "cost per CPU-s",
                "target",
            ],
            rows,
        )
        md += [
            "",
            "Cost per CPU-second is the figure to trust here: req/s moves with whatever "
            "else the two cores are doing.",
            "",
        ]

    lat_wrk: dict[str, Any] = {}
    lat_open: dict[str, Any] = {}
    for source in (s.get("latency", {}), s.get("baseline", {})):
        for name, data in source.get("wrk", {}).items():
            lat_wrk.setdefault(name, data)
        for name, data in source.get("open_loop", {}).items():
            lat_open.setdefault(name, data)
    if lat_wrk:
        md += ["## Latency, closed loop (wrk --latency, 16 connections)", ""]
        rows = _latency_rows(
            lat_wrk,
            lambda d, lat, added: [
                _f(d["rps"], 0),
                *_percentiles(lat, ("p50", "p90", "p99")),
                _f(lat.get("max"), 1),
                *added,
                str(d["non_2xx"] + d["socket_errors"]),
            ],
        )
        md += _table(
            ["target", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", *ADDED, "errors"], rows
        )
        md += [""]
        base = lat_wrk.get("direct", {}).get("latency_ms", {})
        if "gateway" in lat_wrk and base:
            g = lat_wrk["gateway"]["latency_ms"]
            headline.append(
                f"latency (wrk, 16 conns): added p50 {_f(g.get('p50', 0) - base.get('p50', 0), 2)}"
                f" ms, p99 {_f(g.get('p99', 0) - base.get('p99', 0), 2)} ms "
                "(targets: <= 3 / <= 15 ms)"
            )
    if lat_open:
        any_run = next(iter(lat_open.values()))
        md += [
            f"## Latency, open loop ({_f(any_run['rate'], 0)} req/s fixed rate for "
            f"{_f(any_run['duration_s'], 0)} s over at most "
            f"{any_run.get('max_connections', 256)} connections, measured from each "
            "request's scheduled send time, bench/openloop.py)",
            "",
        ]
        rows = _latency_rows(
            lat_open,
            lambda d, lat, added: [
                _f(d["achieved_rps"], 0),
                f"{d['completed']}/{d['scheduled']}",
                str(d["non_2xx"] + d["errors"]),
                *_percentiles(lat, ("p50", "p90", "p99", "p99.9")),
                _f(lat["max"], 1),
                *added,
                _f(d["driver_send_lag_ms"]["p99"], 2),
            ],
        )
        base = lat_open.get("direct", {}).get("latency_ms", {})
        md += _table(
            [
                "target",
                "achieved req/s",
                "completed",
                "errors",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "p99.9 ms",
                "max ms",
                *ADDED,
                "driver send lag p99 ms",
            ],
            rows,
        )
        lagging = [n for n, d in lat_open.items() if d["driver_send_lag_ms"]["p99"] > 10]
        if lagging:
            md += [
                "",
                f"**Not a clean measurement for {', '.join(LABELS[n] for n in lagging)}**: the "
                "driver itself sent late (send lag p99 > 10 ms), so the machine was overloaded "
                "during that run and its percentiles include client-side delay.",
            ]
        md += [""]
        if "gateway" in lat_open and base:
            g = lat_open["gateway"]["latency_ms"]
            headline.append(
                f"latency (open loop {_f(any_run['rate'], 0)} req/s): gateway p50 "
                f"{_f(g['p50'], 2)} / p99 {_f(g['p99'], 2)} ms, added p50 "
                f"{_f(g['p50'] - base['p50'], 2)} ms, p99 {_f(g['p99'] - base['p99'], 2)} ms"
            )

    mem = s.get("memory")
    if mem:
        md += [
            "## Memory (all gunicorn processes: master + 2 workers, from /proc)",
            "",
            "RSS sums count pages shared between master and workers once per process; PSS "
            "splits them, so the PSS sum is the real footprint.",
            "",
        ]
        rows = []
        for label, d in (
            ("gateway idle (after 4 warm-up requests)", mem.get("idle")),
            ("gateway after the throughput run", mem.get("after_throughput")),
        ):
            if d:
                rows.append(
                    [
                        label,
                        str(d["processes"]),
                        _f(d["rss_mb"]),
                        _f(d["pss_mb"]),
                        " + ".join(_f(x) for x in d["per_process_rss_mb"]),
                    ]
                )
        bare_idle = s.get("baseline", {}).get("memory_idle_bare")
        bare_after = tp.get("bare", {}).get("memory_after") if tp else None
        for label, d in (("bare proxy idle", bare_idle), ("bare proxy after its run", bare_after)):
            if d:
                rows.append(
                    [
                        label,
                        str(d["processes"]),
                        _f(d["rss_mb"]),
                        _f(d["pss_mb"]),
                        " + ".join(_f(x) for x in d["per_process_rss_mb"]),
                    ]
                )
        md += _table(["state", "processes", "RSS sum MB", "PSS sum MB", "RSS per process MB"], rows)
        md += [
            "",
            f"Reference (issue 2): bare Django + gevent, 2 workers ~{REF_BARE_DJANGO_RSS_MB}"
            " MB; LiteLLM ~1 GB; issue 10's cap 200 MB.",
            "",
        ]
        after = mem.get("after_throughput") or {}
        headline.append(
            f"memory: gateway idle RSS {_f(mem['idle']['rss_mb'])} MB "
            f"(PSS {_f(mem['idle']['pss_mb'])}), after load RSS "
            f"{_f(after.get('rss_mb'))} MB (PSS {_f(after.get('pss_mb'))})"
        )

    for section in (
        _stream_section,
        _workers_section,
        _scale_section,
        _litellm_section,
        _soak_section,
    ):
        lines, heads = section(s)
        md += lines
        headline += heads

    profiles = s.get("profile")
    if profiles:
        md += ["## Profile (py-spy, one gateway worker)", ""]
        if "skipped" in profiles:
            md += [f"Skipped: {profiles['skipped']}", ""]
        else:
            md += ["Full text (top 25, with callers) in `bench/profile.txt`.", ""]
        for prof in profiles.values() if "skipped" not in profiles else []:
            if "skipped" in prof:
                md += [f"Skipped: {prof['skipped']}", ""]
                continue
            md += [
                f"### Under {prof['label']}: {prof['samples']} busy samples",
                "",
                "CPU by area (leaf frame):",
                "",
            ]
            md += _table(["area", "share"], [[k, f"{v}%"] for k, v in prof["areas"].items()])
            md += ["", "Project functions by inclusive time (share of the worker's busy CPU):", ""]
            md += _table(
                ["function", "share"], [[f"`{k}`", f"{v}%"] for k, v in prof["inclusive_top"][:12]]
            )
            md += ["", "Top functions by self time:", ""]
            md += _table(
                ["function", "share", "reached from (project frame)"],
                [[f"`{k}`", f"{v}%", f"`{c}`"] for k, v, c in prof["self_top"][:12]],
            )
            md += [""]

    errors = results.get("gateway_log_tail") or []
    md += ["## Gateway log", ""]
    if errors:
        md += [
            "Distinct non-INFO lines from the gateway logs during the run (count × line):",
            "",
            "```",
            *errors,
            "```",
            "",
        ]
    else:
        md += ["No warnings or errors in the gateway's log during the run.", ""]

    md += [
        "## Notes",
        "",
        ANALYSIS_START,
        analysis.strip() or "(no analysis yet)",
        ANALYSIS_END,
        "",
    ]
    return "\n".join(md), headline


def write_results(results: dict[str, Any], path: Path | None) -> str:
    # A re-render of a saved run (results.json) keeps the run's own machine
    # and commit, not today's.
    info = results.get("machine") or machine()
    results["machine"] = info
    analysis = ""
    if path is not None and path.exists():
        match = re.search(
            re.escape(ANALYSIS_START) + r"(.*?)" + re.escape(ANALYSIS_END),
            path.read_text(),
            re.DOTALL,
        )
        if match:
            analysis = match.group(1)
    text, headline = render(results, info, analysis)
    if path is not None:
        path.write_text(text)
    summary = [
        f"XRouter bench v1 — commit {info['commit']} (dirty: {info['dirty']}), "
        f"{results.get('elapsed_s')} s",
        *(f"  {h}" for h in headline),
    ]
    if path is not None:
        summary.append(f"  full results: {path}")
    return "\n".join(summary)
