"""One load per key at a time when a worker's local copy expires (issue 19)."""

from __future__ import annotations

import sys
import threading
import types
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache as django_cache

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


class _Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr("keys.principal.time.monotonic", fake)
    return fake


@pytest.fixture
def shared(settings: Any) -> Iterator[Any]:
    """Two workers' caches over one shared cache, and the 'database' they load from."""
    if not settings.XROUTER_SHARED_CACHE:
        pytest.skip("needs the shared cache (REDIS_URL)")
    settings.XROUTER_KEY_LOCAL_TTL = 1.0
    settings.XROUTER_KEY_LOCAL_MAX_AGE = 300.0
    prefix = f"t:{uuid.uuid4().hex}:"
    db: dict[str, str] = {"d1": "key one", "d2": "key two"}
    loads: list[str] = []

    def load(digest: str) -> KeyPrincipal | str:
        loads.append(digest)
        return db.get(digest, "-")

    workers = [PrincipalCache(what="test key", shared_prefix=prefix, load=load) for _ in range(2)]
    yield types.SimpleNamespace(a=workers[0], b=workers[1], db=db, loads=loads, prefix=prefix)
    django_cache.delete_many([prefix + "epoch", prefix + "d1", prefix + "d2"])


def test_an_unchanged_key_is_kept_past_the_local_ttl(clock: _Clock, shared: Any) -> None:
    """No announcement: the worker's copy serves for the max age without a reload."""
    assert shared.a.get("d1") == "key one"
    shared.loads.clear()
    for _ in range(10):
        clock.now += 25  # 250 s in all, a read of the counter each time
        assert shared.a.get("d1") == "key one"
    assert shared.loads == []
    clock.now += 60  # past the max age: read again
    django_cache.delete(shared.prefix + "d1")
    assert shared.a.get("d1") == "key one"
    assert shared.loads == ["d1"]


def test_a_revocation_on_another_worker_is_seen_within_the_local_ttl(
    clock: _Clock, shared: Any
) -> None:
    """Worker B revokes; worker A drops its copy at its next read of the counter."""
    assert shared.a.get("d1") == "key one"
    assert shared.a.get("d2") == "key two"
    clock.now += 30
    assert shared.a.get("d1") == "key one"  # trusted, no reload
    shared.db["d1"] = "-"  # revoked in the database...
    shared.b.forget(["d1"])  # ...and announced, as the post_save signal does
    clock.now += 0.5
    assert shared.a.get("d1") == "key one"  # within the bound: not checked yet
    clock.now += 0.6  # the local TTL since A's last read has passed
    assert shared.a.get("d1") == "-"
    # Only the announced key was dropped.
    shared.loads.clear()
    assert shared.a.get("d2") == "key two"
    assert shared.loads == []


def test_an_unreadable_counter_empties_the_tier(
    clock: _Clock, shared: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis failing at the read: the worker cannot know, so it forgets all."""
    assert shared.a.get("d1") == "key one"
    clock.now += 2

    class EpochDown:
        """The shared cache with the announcement counter unreadable."""

        def __getattr__(self, name: str) -> Any:
            return getattr(django_cache, name)

        def get(self, key: str, *args: Any, **kwargs: Any) -> Any:
            if key.endswith("epoch"):
                raise ConnectionError("redis gone")
            return django_cache.get(key, *args, **kwargs)

    monkeypatch.setattr("keys.principal.cache", EpochDown())
    shared.loads.clear()
    django_cache.delete(shared.prefix + "d1")
    assert shared.a.get("d1") == "key one"
    assert shared.loads == ["d1"]
    # Until a good read, new entries live only the local TTL.
    clock.now += 1.5
    monkeypatch.setattr("keys.principal.cache", django_cache)
    django_cache.delete(shared.prefix + "d1")
    assert shared.a.get("d1") == "key one"
    assert shared.loads == ["d1", "d1"]


def test_a_lost_counter_empties_the_tier(clock: _Clock, shared: Any) -> None:
    """Redis restarted (counter and announcements gone): forget all, start a new series."""
    shared.b.forget(["d9"])
    assert shared.a.get("d1") == "key one"
    clock.now += 2
    assert shared.a.get("d1") == "key one"
    django_cache.delete(shared.prefix + "epoch")
    shared.b.forget(["d9"])  # a new series, far from the old count
    shared.loads.clear()
    django_cache.delete(shared.prefix + "d1")
    clock.now += 2
    assert shared.a.get("d1") == "key one"
    assert shared.loads == ["d1"]


def test_missing_announcements_empty_the_tier(clock: _Clock, shared: Any) -> None:
    """A count whose digests expired (an idle worker): forget all rather than guess."""
    assert shared.a.get("d1") == "key one"
    clock.now += 2
    assert shared.a.get("d1") == "key one"
    shared.b.forget(["d9"])
    epoch = django_cache.get(shared.prefix + "epoch")
    django_cache.delete(f"{shared.prefix}epoch:{epoch}")
    shared.loads.clear()
    django_cache.delete(shared.prefix + "d1")
    clock.now += 2
    assert shared.a.get("d1") == "key one"
    assert shared.loads == ["d1"]


def test_an_eviction_read_during_a_load_keeps_that_entry_short(clock: _Clock, shared: Any) -> None:
    """The load raced an announcement: its value is trusted only the local TTL."""
    assert shared.a.get("d2") == "key two"  # A has read the counter once
    clock.now += 2

    def racing_load(digest: str) -> KeyPrincipal | str:
        value = "stale " + digest  # read before the revocation...
        shared.b.forget([digest])  # ...announced meanwhile...
        shared.a._check_announcements()  # ...and read by another request of A
        return value

    shared.a.load_from_db = racing_load
    assert shared.a.get("d1") == "stale d1"
    deadline, _value = shared.a.local["d1"]
    assert deadline == clock.now + 1.0  # the local TTL, not the max age
    # Past it, A reads again (here the shared copy the racing load left; the
    # signal's second eviction after commit removes that one).
    django_cache.delete(shared.prefix + "d1")
    shared.a.load_from_db = lambda digest: "fresh " + digest
    clock.now += 1.1
    assert shared.a.get("d1") == "fresh d1"
