"""One load per key at a time when a worker's local copy expires (issue 19)."""

from __future__ import annotations

import sys
import threading
from typing import Any

import pytest

from keys.principal import KeyPrincipal, PrincipalCache
from tests.waiting import wait_until


def _waiting(thread: threading.Thread) -> bool:
    frame = sys._current_frames().get(thread.ident or 0)
    while frame is not None:
        if frame.f_code.co_name == "wait":
            return True
        frame = frame.f_back
    return False


def test_concurrent_misses_share_one_load(settings: Any) -> None:
    """Eight requests of one expired key: one load, and all eight get its result."""
    settings.XROUTER_SHARED_CACHE = False
    release = threading.Event()
    calls: list[str] = []

    def load(digest: str) -> KeyPrincipal | str:
        calls.append(digest)
        release.wait(10)
        return f"miss:{digest}:{len(calls)}"

    cache = PrincipalCache(what="test key", shared_prefix="t:", load=load)
    results: list[KeyPrincipal | str] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("d1"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    # Every thread is parked: one in the load, the others on its event
    # (without the single flight, all eight would be in the load).
    wait_until(lambda: all(_waiting(t) for t in threads), timeout=10)
    release.set()
    for thread in threads:
        thread.join(10)
    assert calls == ["d1"]
    assert results == ["miss:d1:1"] * 8
    assert cache.loading == {}


def test_a_failed_load_lets_the_next_request_load_again(settings: Any) -> None:
    settings.XROUTER_SHARED_CACHE = False
    attempts: list[int] = []

    def load(digest: str) -> KeyPrincipal | str:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("database gone")
        return "miss"

    cache = PrincipalCache(what="test key", shared_prefix="t:", load=load)
    with pytest.raises(RuntimeError, match="database gone"):
        cache.get("d2")
    assert cache.loading == {}
    assert cache.get("d2") == "miss"
    assert len(attempts) == 2
