"""Wait for a condition instead of sleeping for a guessed time.

A fixed sleep is too long on an idle machine and too short on a loaded one.
Polling the condition with a deadline returns as soon as the system gets
there and, when it never does, fails with a message that names what was
awaited. A bound the test proves ("revoked within 1 s") is the ``timeout``::

    from tests.waiting import wait_until

    took = wait_until(lambda: hits() >= 2, timeout=5, what="two upstream hits")
    wait_until(server_answers, timeout=10, what="redis to start", ignoring=(OSError,))

A sleep that is itself under test (letting a TTL run out) stays a sleep,
with a comment saying so.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["wait_until"]


def wait_until(
    predicate: Callable[[], object],
    *,
    timeout: float,
    interval: float = 0.05,
    what: str | Callable[[], str] | None = None,
    ignoring: tuple[type[BaseException], ...] = (),
) -> float:
    """Poll ``predicate`` until it returns something true; return the seconds taken.

    The predicate is called at least once and never started after the
    deadline. Exceptions of the ``ignoring`` types count as "not yet" (the
    last one is quoted in the failure); any other exception propagates.
    ``what`` describes the condition for the failure message; a callable is
    called only on failure, so it can report the state at that moment.
    """
    if timeout <= 0 or interval <= 0:
        raise ValueError(f"timeout and interval must be positive, got {timeout=} {interval=}")
    started = time.monotonic()
    deadline = started + timeout
    last_error: BaseException | None = None
    while True:
        try:
            if predicate():
                return time.monotonic() - started
        except ignoring as exc:
            last_error = exc
        now = time.monotonic()
        if now >= deadline:
            break
        time.sleep(min(interval, deadline - now))
    name = what() if callable(what) else what
    name = name or getattr(predicate, "__qualname__", repr(predicate))
    message = f"timed out after {timeout:g}s waiting for {name}"
    if last_error is not None:
        message += f" (last error: {type(last_error).__name__}: {last_error})"
    raise AssertionError(message)
