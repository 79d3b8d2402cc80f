"""The per-deployment mirror of the shared cache reads what it must, once."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache

from routing import cache_mirror
from routing.cache_mirror import CacheMirror


class CountingCache:
    """The real cache, with the keys each call asked for."""

    def __init__(self) -> None:
        self.gets: list[str] = []
        self.get_manys: list[list[str]] = []

    def get(self, key: str) -> Any:
        self.gets.append(key)
        return cache.get(key)

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        self.get_manys.append(list(keys))
        return cache.get_many(keys)

    def incr(self, key: str) -> int:
        return cache.incr(key)

    def add(self, key: str, value: Any, timeout: Any = None) -> bool:
        return bool(cache.add(key, value, timeout))


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> CountingCache:
    counter = CountingCache()
    monkeypatch.setattr(cache_mirror, "cache", counter)
    return counter


def mirror(interval: float = 3600.0) -> CacheMirror[str]:
    return CacheMirror(what="test", key=lambda i: f"mirror-test:{i}", decode=str, interval=interval)


def test_a_new_id_is_read_at_once_and_alone(counting: CountingCache) -> None:
    cache.set("mirror-test:7", "open")
    states = mirror()
    assert states.get(1) is None  # the first call also does the first full refresh
    counting.gets.clear()
    counting.get_manys.clear()
    for ident in range(2, 200):
        states.get(ident)
    assert states.get(7) == "open"
    # One read per new id, never a re-read of every id known so far.
    assert len(counting.gets) == 198
    assert counting.get_manys == []


def test_known_ids_are_refreshed_together_once_the_interval_passes(
    counting: CountingCache,
) -> None:
    states = mirror(interval=0.0)
    states.get(1)
    states.get(2)
    cache.set("mirror-test:1", "half-open")
    states.changed()
    counting.get_manys.clear()
    assert states.get(1) == "half-open"
    assert counting.get_manys == [["mirror-test:1", "mirror-test:2"]]


def test_nothing_announced_nothing_re_read(counting: CountingCache) -> None:
    """Issue 19: 3,000 ids re-read every second while nothing changed.

    Each refresh reads the one counter; the ids only when a writer announced.
    """
    states = mirror(interval=0.0)
    for ident in range(1, 50):
        states.get(ident)
    counting.get_manys.clear()
    counting.gets.clear()
    for _ in range(20):
        states.get(7)
    assert counting.get_manys == []
    assert set(counting.gets) == {states.changes_key}


def test_an_unannounced_write_is_read_at_the_next_full_refresh(
    counting: CountingCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that could not announce (or expiry) is seen within ``full_every``."""
    now = [100.0]
    monkeypatch.setattr(cache_mirror.time, "monotonic", lambda: now[0])
    states = CacheMirror(
        what="test", key=lambda i: f"mirror-test:{i}", decode=str, interval=1.0, full_every=30.0
    )
    assert states.get(1) is None
    cache.set("mirror-test:1", "open")
    now[0] += 2
    assert states.get(1) is None  # not announced, not due
    now[0] += 30
    assert states.get(1) == "open"


def test_an_id_first_seen_without_a_read_is_read_at_the_next_refresh(
    counting: CountingCache,
) -> None:
    """``read_new_now=False`` (the breaker's hot path): read next time even if quiet.

    Its value may have been announced before this worker knew the id.
    """
    cache.set("mirror-test:9", "open")
    states = mirror(interval=0.0)
    states.get(1)  # the first full refresh, before 9 is known
    assert states.get(9, read_new_now=False) == "open"
    assert counting.get_manys[-1] == ["mirror-test:9"]


def test_a_cache_outage_keeps_the_last_values(monkeypatch: pytest.MonkeyPatch) -> None:
    cache.set("mirror-test:3", "open")
    states = mirror(interval=0.0)
    assert states.get(3) == "open"

    class Down:
        def get(self, key: str) -> Any:
            raise ConnectionError("down")

        def get_many(self, keys: list[str]) -> Any:
            raise ConnectionError("down")

    monkeypatch.setattr(cache_mirror, "cache", Down())
    assert states.get(3) == "open"
    assert states.get(4) is None


def test_a_new_table_is_read_in_one_round_trip(counting: CountingCache) -> None:
    """``know`` (a new routing table): one get_many for every new id, then no GET per id."""
    cache.set("mirror-test:42", "down")
    states = mirror()
    states.know(range(1, 101))
    assert counting.get_manys == [[f"mirror-test:{i}" for i in range(1, 101)]]
    counting.gets.clear()
    assert states.get(42) == "down"
    assert all(states.get(i) is None for i in range(1, 101) if i != 42)
    assert [k for k in counting.gets if k != states.changes_key] == []
    states.know(range(1, 101))  # nothing new: no read
    assert len(counting.get_manys) == 2  # the first refresh of get() above, and no more
