"""Zero-config health checks: no broker, no Redis, two gunicorn workers.

Each worker has its own memory cache, so each runs the schedule and probes
every deployment for its own routing decisions (xrouter_site.scheduler).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from providers.emulators.testing import RunningEmulator
from tests.e2e.conftest import Client, Stack, model_list_hits, running_stack
from tests.e2e.test_e2e_scheduler import SCHEDULER_ENV, route_around_down_primary


@pytest.fixture(scope="module")
def stack(django_db_setup: None) -> Iterator[Stack]:
    with running_stack(SCHEDULER_ENV, celery=False, shared_cache=False) as running:
        yield running


def test_each_worker_probes_and_routes_around_a_dead_upstream(
    client: Client, primary: RunningEmulator, stack: Stack
) -> None:
    """Both workers probe both primary deployments each second; both skip it once down."""
    assert stack.gateway.log().count("in-process scheduler started") == 2
    start = model_list_hits(primary)
    time.sleep(4.0)
    probes = model_list_hits(primary) - start
    # 2 workers x 2 deployments on the primary x 3-5 ticks; one worker alone
    # could not exceed 2 x 5 = 10.
    assert 11 <= probes <= 2 * 2 * 5, probes
    route_around_down_primary(client, primary)
