"""One registry of the per-process state that must be dropped together.

Module-level singletons (key and token caches, the routing table, the
limiter, breakers, health, usage sinks, pending key activity) register how
to reset themselves with :func:`on_reset`; :func:`reset_process_state` runs
them all, in registration order. Tests call it between tests; a reload that
must forget everything can too. Nothing here knows the singletons.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

_resets: dict[str, Callable[[], None]] = {}


def on_reset(name: str, reset: Callable[[], None]) -> None:
    """Register ``reset`` under ``name``; registering a name again replaces it."""
    _resets[name] = reset


def reset_process_state() -> None:
    """Run every registered reset; one failing does not stop the others."""
    errors: list[BaseException] = []
    for name, reset in list(_resets.items()):
        try:
            reset()
        except Exception as exc:
            logger.exception("process state reset failed", extra={"state": name})
            errors.append(exc)
    if errors:
        raise errors[0]
