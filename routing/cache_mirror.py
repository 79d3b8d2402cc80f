"""A worker's copy of per-deployment entries of the shared cache.

Health results and breaker states are written to the shared cache by
whichever process learns them; every worker reads them on the hot path from
this in-process copy. Only ids this process has asked about are re-read.

Writers announce a write by bumping one counter (:meth:`CacheMirror.changed`).
Each interval a worker reads that counter and re-reads its ids (one
``get_many``) only when it moved, or when ``full_every`` seconds have passed
(entries also expire on their own). Issue 19: with 3,000 deployments the two
mirrors re-read 6,000 keys every second per worker, ~120 ms of CPU a second
on the busy bench box, while nothing had changed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
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
        full_every: float = 30.0,
    ) -> None:
        self.what = what
        self.key = key
        self.decode = decode
        self.enabled = enabled
        self.interval = interval
        self.full_every = full_every
        self.changes_key = f"{what}:changes"
        self._lock = threading.Lock()
        self._values: dict[int, V] = {}
        self._known: set[int] = set()
        self._unread: set[int] = set()
        self._next_refresh = 0.0
        self._next_full = 0.0
        # The counter as of the last full read (None: absent or not read).
        self._changes: Any = None

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
            else:
                # Read at the next refresh even if nothing is announced: its
                # value may predate the last full read.
                self._unread.add(ident)
        self.refresh()
        return self._values.get(ident)

    def know(self, idents: Iterable[int]) -> None:
        """Read every new id of ``idents`` now, in one ``get_many``, and keep them known.

        Called with a routing table's deployments when it is new: a worker's
        first pass over a big catalog otherwise paid one GET per deployment
        (issue 19: 15 % of a worker's samples while the bench's 3,000
        deployments were first seen). A failed read leaves them unknown, so
        ``get`` reads each alone as before.
        """
        new = [i for i in idents if i not in self._known]
        if not new:
            return
        self._known.update(new)
        if not self.enabled():
            return
        try:
            shared = cache.get_many([self.key(i) for i in new])
        except Exception:
            logger.warning(
                "%s: cache unavailable; reading ids one by one", self.what, exc_info=True
            )
            self._known.difference_update(new)
            return
        with self._lock:
            for ident in new:
                value = shared.get(self.key(ident))
                if value is None:
                    self._values.pop(ident, None)
                else:
                    self._values[ident] = self.decode(value)

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

    def changed(self) -> None:
        """Announce a write to the shared cache: every worker re-reads within the interval."""
        try:
            try:
                cache.incr(self.changes_key)
            except ValueError:  # no counter yet (or Redis lost it)
                if not cache.add(self.changes_key, 1, None):
                    cache.incr(self.changes_key)
        except Exception:
            # The periodic full read still picks the write up.
            logger.warning("%s: could not announce a change", self.what, exc_info=True)

    def refresh(self) -> None:
        now = time.monotonic()
        if now < self._next_refresh or not self._known or not self.enabled():
            return
        self._next_refresh = now + self.interval
        try:
            changes = cache.get(self.changes_key)
            # An absent counter (nothing announced yet, or Redis lost it) is a
            # value too: its appearance or loss is a change.
            quiet = changes == self._changes and now < self._next_full
            known = list(self._unread if quiet else self._known)
            if not known:
                return
            shared = cache.get_many([self.key(i) for i in known])
        except Exception:
            logger.warning(
                "%s: cache unavailable; keeping the last values", self.what, exc_info=True
            )
            return
        self._unread.difference_update(known)
        if not quiet:
            # Read before the values: a write announced after it is re-read next time.
            self._changes = changes
            self._next_full = now + self.full_every
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
            self._unread.clear()
            self._next_refresh = 0.0
            self._next_full = 0.0
            self._changes = None
