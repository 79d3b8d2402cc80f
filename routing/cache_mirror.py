"""A worker's copy of per-deployment entries of the shared cache.

Health results and breaker states are written to the shared cache by
whichever process learns them; every worker reads them on the hot path from
this in-process copy, refreshed with one ``get_many`` at most once per
interval. Only ids this process has asked about are re-read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from django.core.cache import cache

logger = logging.getLogger(__name__)

V = TypeVar("V")


def _always() -> bool:
    return True


class CacheMirror(Generic[V]):
    """Entries ``key(id)`` of the shared cache, decoded, as of the last refresh.

    ``enabled`` says whether to read the shared cache at all (the breaker
    skips it without one); a cache outage keeps the last values.
    """

    def __init__(
        self,
        *,
        what: str,
        key: Callable[[int], str],
        decode: Callable[[Any], V],
        enabled: Callable[[], bool] = _always,
        interval: float = 1.0,
    ) -> None:
        self.what = what
        self.key = key
        self.decode = decode
        self.enabled = enabled
        self.interval = interval
        self._lock = threading.Lock()
        self._values: dict[int, V] = {}
        self._known: set[int] = set()
        self._next_refresh = 0.0

    def get(self, ident: int, *, read_new_now: bool = True) -> V | None:
        """Return the value of ``ident``, refreshing first if the interval passed.

        An id this process has not asked about yet is read at once when
        ``read_new_now``, instead of counting as absent until the next refresh.
        """
        if ident not in self._known:
            self._known.add(ident)
            if read_new_now:
                # Only this id: re-reading every known id here made a worker's
                # first pass over a big catalog quadratic (one get_many of all
                # ids so far per new id).
                self._read_one(ident)
        self.refresh()
        return self._values.get(ident)

    def _read_one(self, ident: int) -> None:
        if not self.enabled():
            return
        try:
            value = cache.get(self.key(ident))
        except Exception:
            logger.warning(
                "%s: cache unavailable; keeping the last values", self.what, exc_info=True
            )
            return
        self.put(ident, None if value is None else self.decode(value))

    def peek(self, ident: int) -> V | None:
        """Return this process's value of ``ident`` without touching the cache."""
        return self._values.get(ident)

    def put(self, ident: int, value: V | None) -> None:
        """Set (or with None, drop) this process's value; the writer shares it."""
        with self._lock:
            if value is None:
                self._values.pop(ident, None)
            else:
                self._values[ident] = value

    def refresh(self) -> None:
        now = time.monotonic()
        if now < self._next_refresh or not self._known or not self.enabled():
            return
        self._next_refresh = now + self.interval
        known = list(self._known)
        try:
            shared = cache.get_many([self.key(i) for i in known])
        except Exception:
            logger.warning(
                "%s: cache unavailable; keeping the last values", self.what, exc_info=True
            )
            return
        with self._lock:
            for ident in known:
                value = shared.get(self.key(ident))
                if value is None:
                    self._values.pop(ident, None)
                else:
                    self._values[ident] = self.decode(value)

    def reset(self) -> None:
        with self._lock:
            self._values.clear()
            self._known.clear()
            self._next_refresh = 0.0
