"""Turn py-spy's raw (collapsed) stacks into a short text summary.

py-spy drops idle samples by default, so with gevent (idle = the hub waiting
in epoll) every sample is a moment the worker spent CPU; shares below are
shares of the worker's busy time. Shows: where the CPU goes by area, the
top functions by self time, and the project's own functions by inclusive
time (everything they call), which is what points at the hot path's cost.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

REPO = str(Path(__file__).resolve().parent.parent)
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
_PROJECT_PACKAGES = ("routing", "keys", "providers", "xrouter_site", "accounts")

# Area of a leaf frame, by file path; first match wins.
_AREAS: tuple[tuple[str, str], ...] = (
    ("/logging/", "logging (stdlib)"),
    ("xrouter_site/logging.py", "logging (xrouter JSON formatter)"),
    ("/urllib3/", "urllib3"),
    ("/requests/", "requests"),
    ("/http/client.py", "http.client (stdlib)"),
    ("/gevent/", "gevent (sockets, hub, greenlets)"),
    ("/gunicorn/", "gunicorn (HTTP parsing, WSGI)"),
    ("/django/", "django"),
    ("/orjson", "orjson"),
    ("/json/", "json (stdlib)"),
    ("/email/", "email (stdlib, header parsing)"),
    ("/socket.py", "socket (stdlib)"),
    ("/ssl.py", "ssl"),
    ("/redis/", "redis"),
    ("/psycopg2", "psycopg2"),
)


def _file_of(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip(), ""
    return match.group("func"), match.group("file")


def _is_project(path: str) -> bool:
    if "/.venv/" in path or "site-packages" in path:
        return False
    if path.startswith(REPO):
        return True
    return path.split("/", 1)[0] in _PROJECT_PACKAGES


def _short(path: str) -> str:
    if path.startswith(REPO + "/"):
        return path[len(REPO) + 1 :]
    for marker in ("site-packages/", "/lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def area(path: str) -> str:
    if _is_project(path):
        return "xrouter code (self time)"
    for needle, name in _AREAS:
        if needle in path:
            return name
    return "other"


def _parse(raw: str) -> list[tuple[str, list[str], int]]:
    """(thread, frames root-first, count) per line of py-spy's raw output."""
    stacks = []
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [f for f in stack.split(";") if f]
        # With --threads the root frames name the process and OS thread.
        thread = next((f for f in frames if f.startswith("thread (")), "")
        frames = [f for f in frames if not f.startswith(("thread (", "process "))]
        if frames:
            stacks.append((thread, frames, int(count_text)))
    return stacks


def summarize(raw: str, top: int = 25, label: str = "load") -> dict[str, Any]:
    stacks = _parse(raw)
    # The worker's greenlets (and so every request) run on the OS thread
    # that runs gunicorn's loop. Other OS threads are gevent's native
    # threadpool (DNS lookups), whose lock waits py-spy counts as busy:
    # they are reported apart, not mixed into the request path's shares.
    main_threads = {t for t, frames, _ in stacks if any("/gunicorn/" in f for f in frames)}
    other: Counter[str] = Counter()
    total = 0
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    # For library leaves: which project frame led there (the actionable part).
    via: dict[str, Counter[str]] = {}
    for thread, frames, count in stacks:
        func, path = _file_of(frames[-1])
        if main_threads and thread not in main_threads:
            other[f"{_short(path)}:{func}"] += count
            continue
        total += count
        leaf = f"{_short(path)}:{func}"
        self_time[leaf] += count
        areas[area(path)] += count
        caller = next(
            (
                f"{_short(p)}:{fn}"
                for fn, p in (_file_of(f) for f in reversed(frames[:-1]))
                if _is_project(p)
            ),
            "(no project frame)",
        )
        via.setdefault(leaf, Counter())[caller] += count
        seen: set[str] = set()
        for frame in frames:
            func, path = _file_of(frame)
            if _is_project(path):
                key = f"{_short(path)}:{func}"
                if key not in seen:
                    seen.add(key)
                    inclusive[key] += count
    other_text = [f"  {n} samples  {name}" for name, n in other.most_common(5)]

    def pct(n: int) -> float:
        return round(100 * n / total, 1) if total else 0.0

    lines = [
        f"py-spy profile of one gateway worker under {label}, busy samples only",
        f"samples: {total}",
        "",
        "CPU by area (leaf frame):",
        *(f"  {pct(n):5.1f}%  {name}" for name, n in areas.most_common()),
        "",
        f"top {top} functions by self time (with the project frame that called them):",
        *(
            f"  {pct(n):5.1f}%  {name}\n           via "
            + ", ".join(f"{c} {pct(k)}%" for c, k in via[name].most_common(2))
            for name, n in self_time.most_common(top)
        ),
        "",
        f"project functions by inclusive time (top {top}):",
        *(f"  {pct(n):5.1f}%  {name}" for name, n in inclusive.most_common(top)),
        "",
        "other OS threads (not the request loop; excluded above):",
        *(other_text or ["  none"]),
        "",
    ]
    return {
        "samples": total,
        "other_thread_samples": sum(other.values()),
        "areas": {name: pct(n) for name, n in areas.most_common()},
        "self_top": [
            (name, pct(n), via[name].most_common(1)[0][0]) for name, n in self_time.most_common(top)
        ],
        "inclusive_top": [(name, pct(n)) for name, n in inclusive.most_common(top)],
        "label": label,
        "text": "\n".join(lines),
    }
