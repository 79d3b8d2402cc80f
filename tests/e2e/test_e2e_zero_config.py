"""Zero-config health checks: no broker, no Redis, two gunicorn workers.

Each worker has its own memory cache, so each runs the schedule and probes
every deployment for its own routing decisions (xrouter_site.scheduler).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from providers.emulators.testing import RunningEmulator
from tests.e2e.conftest import Client, Stack, running_stack, watch_probes
from tests.e2e.test_e2e_scheduler import (
    INTERVAL,
    PRIMARY_PROBES,
    SCHEDULER_ENV,
    route_around_down_primary,
)


@pytest.fixture(scope="module")
def stack(django_db_setup: None) -> Iterator[Stack]:
    with running_stack(SCHEDULER_ENV, celery=False, shared_cache=False) as running:
        yield running


def test_each_worker_probes_and_routes_around_a_dead_upstream(
    client: Client, primary: RunningEmulator, stack: Stack
) -> None:
    """Both workers probe the primary each second (one call answers both of its
    deployments); both skip it once down."""
    assert stack.gateway.log().count("in-process scheduler started") == 2
    # Each worker probes the primary every tick for itself: more probes
    # arrive than one worker alone could send, and never more than two.
    watch_probes(primary, interval=INTERVAL, per_tick=PRIMARY_PROBES, senders=2)
    route_around_down_primary(client, primary, stack)
