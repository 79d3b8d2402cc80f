"""Record when keys were last used, without a write per request.

The hot path only notes the key id in memory; a background thread writes
the batch with one UPDATE every ``XROUTER_LAST_USED_FLUSH_SECONDS``. Losing
the last few seconds on a crash costs nothing but a slightly older
"last used" time.
"""

from __future__ import annotations

import atexit
import logging
import threading

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from xrouter_site.batching import PeriodicFlusher
from xrouter_site.state import on_reset

logger = logging.getLogger(__name__)

_pending: set[int] = set()
_lock = threading.Lock()


def touch(key_id: int) -> None:
    """Note that ``key_id`` was used just now."""
    _pending.add(key_id)
    if not _flusher.started:
        _flusher.start()


def flush() -> int:
    """Write pending last-used times; return how many keys were updated."""
    from keys.models import ApiKey

    with _lock:
        ids = list(_pending)
        _pending.clear()
    if not ids:
        return 0
    return ApiKey.objects.filter(pk__in=ids).update(last_used_at=timezone.now())


def _flush_in_thread() -> None:
    close_old_connections()
    try:
        flush()
    finally:
        connection.close()


_flusher = PeriodicFlusher(
    "key-last-used", _flush_in_thread, lambda: settings.XROUTER_LAST_USED_FLUSH_SECONDS
)


def forget_pending() -> None:
    """Drop unwritten last-used times (tests: the database they name is gone)."""
    with _lock:
        _pending.clear()


on_reset("keys.activity", forget_pending)


@atexit.register
def _flush_at_exit() -> None:
    if _pending:
        try:
            flush()
        except Exception:
            logger.warning("could not record key last-used times at exit", exc_info=True)
