"""Circuit breakers per deployment, shared by every worker through the cache.

State machine (per deployment):

- **closed**: calls go through; each retryable failure is counted in a
  window of ``XROUTER_BREAKER_WINDOW_SECONDS``.
- **open**: after ``XROUTER_BREAKER_FAILURES`` failures in the window the
  deployment is skipped for a cooldown. Every re-opening doubles the
  cooldown, up to ``XROUTER_BREAKER_MAX_COOLDOWN_SECONDS``.
- **half-open**: when the cooldown ends one worker wins the probe slot (an
  atomic ``cache.add``) and sends one real request through; the others keep
  skipping the deployment. Success closes the breaker and resets the
  cooldown; failure opens it again.

Failures and openings are written to the shared cache (only on failure, so
the happy path pays nothing) and announced. Each worker re-reads which
breakers are open within a second of an announcement, with one
``get_many`` (``routing.cache_mirror``). Without a shared cache the
same machine runs per process.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from routing.cache_mirror import CacheMirror
from xrouter_site.state import on_reset

logger = logging.getLogger(__name__)

_REFRESH_SECONDS = 1.0


@dataclass(slots=True)
class BreakerState:
    open_until: float = 0.0  # wall-clock seconds
    cooldown: float = 0.0


class Breakers:
    """Breaker states of all deployments as this worker sees them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: CacheMirror[BreakerState] = CacheMirror(
            what="breaker",
            key=lambda deployment_id: f"breaker:{deployment_id}",
            decode=lambda value: BreakerState(*value),
            enabled=lambda: bool(settings.XROUTER_SHARED_CACHE),
            interval=_REFRESH_SECONDS,
        )
        self._failures: dict[int, list[float]] = {}

    # --- reading (hot path) -------------------------------------------------

    def allows(self, deployment_id: int) -> bool:
        """Return True if a call to this deployment may go out now."""
        # Unlike state(), a first look does not force a re-read: the next
        # refresh (at most a second away) picks the deployment up.
        state = self._states.get(deployment_id, read_new_now=False)
        if state is None or state.open_until == 0.0:
            return True
        now = time.time()
        if now < state.open_until:
            return False
        # Cooldown over: half-open. One probe across all workers.
        ttl = max(1, int(settings.XROUTER_BREAKER_PROBE_SECONDS))
        try:
            return bool(cache.add(f"breaker:probe:{deployment_id}", 1, ttl))
        except Exception:
            logger.warning("breaker: cache unavailable for the probe slot", exc_info=True)
            return True

    def state(self, deployment_id: int) -> str:
        # A first look from this process (e.g. the dashboard) reads the
        # shared state now instead of reporting "closed" for a second.
        state = self._states.get(deployment_id)
        if state is None or state.open_until == 0.0:
            return "closed"
        return "open" if time.time() < state.open_until else "half-open"

    # --- writing (after a call) ---------------------------------------------------

    def record_success(self, deployment_id: int) -> None:
        state = self._states.peek(deployment_id)
        if state is None or state.open_until == 0.0:
            return
        self._states.put(deployment_id, None)
        with self._lock:
            self._failures.pop(deployment_id, None)
        self._publish(deployment_id, None)
        self._metric(deployment_id, 0)
        logger.info("breaker closed", extra={"deployment_id": deployment_id})

    def record_failure(self, deployment_id: int) -> None:
        now = time.time()
        window = settings.XROUTER_BREAKER_WINDOW_SECONDS
        with self._lock:
            state = self._states.peek(deployment_id)
            half_open = state is not None and state.open_until and now >= state.open_until
            failures = [t for t in self._failures.get(deployment_id, []) if t > now - window]
            failures.append(now)
            self._failures[deployment_id] = failures
        count = self._shared_failures(deployment_id, len(failures))
        if not half_open and count < settings.XROUTER_BREAKER_FAILURES:
            return
        previous = state.cooldown if state is not None else 0.0
        cooldown = min(
            previous * 2 if half_open and previous else settings.XROUTER_BREAKER_COOLDOWN_SECONDS,
            settings.XROUTER_BREAKER_MAX_COOLDOWN_SECONDS,
        )
        new = BreakerState(open_until=now + cooldown, cooldown=cooldown)
        self._states.put(deployment_id, new)
        with self._lock:
            self._failures[deployment_id] = []
        self._publish(deployment_id, new)
        self._metric(deployment_id, 1)
        logger.warning(
            "breaker opened", extra={"deployment_id": deployment_id, "cooldown_s": cooldown}
        )

    def _shared_failures(self, deployment_id: int, local_count: int) -> int:
        if not settings.XROUTER_SHARED_CACHE:
            return local_count
        key = f"breaker:fails:{deployment_id}"
        window = int(settings.XROUTER_BREAKER_WINDOW_SECONDS)
        try:
            if cache.add(key, 1, window):
                return 1
            return int(cache.incr(key))
        except Exception:
            logger.warning("breaker: cache unavailable; counting locally", exc_info=True)
            return local_count

    def _publish(self, deployment_id: int, state: BreakerState | None) -> None:
        if not settings.XROUTER_SHARED_CACHE:
            return
        try:
            if state is None:
                cache.delete_many(
                    [
                        f"breaker:{deployment_id}",
                        f"breaker:fails:{deployment_id}",
                        f"breaker:probe:{deployment_id}",
                    ]
                )
            else:
                # Kept past the cooldown so half-open still knows the last one.
                ttl = int(state.cooldown * 4 + settings.XROUTER_BREAKER_MAX_COOLDOWN_SECONDS)
                cache.set(f"breaker:{deployment_id}", (state.open_until, state.cooldown), ttl)
                cache.delete_many(
                    [f"breaker:fails:{deployment_id}", f"breaker:probe:{deployment_id}"]
                )
        except Exception:
            logger.warning("breaker: could not share the state", exc_info=True)
            return
        self._states.changed()

    @staticmethod
    def _metric(deployment_id: int, value: int) -> None:
        try:
            from routing import metrics

            metrics.BREAKER_OPEN.labels(provider="", deployment=str(deployment_id)).set(value)
        except Exception:
            logger.debug("metrics unavailable", exc_info=True)

    def reset(self) -> None:
        self._states.reset()
        with self._lock:
            self._failures.clear()


breakers = Breakers()


on_reset("routing.breaker", breakers.reset)
