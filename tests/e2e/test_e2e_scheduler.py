"""Health checks without a broker: the in-process scheduler in gunicorn workers.

What ``make run`` does when ``CELERY_BROKER_URL`` is empty: each gunicorn
worker runs ``CELERY_BEAT_SCHEDULE`` itself (xrouter_site.scheduler). With a
shared cache (here) the workers split the ticks; without one see
test_e2e_zero_config.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from providers.emulators.testing import RunningEmulator
from routing import health
from routing.models import Deployment
from tests.e2e.conftest import (
    Client,
    Stack,
    chat_hits,
    model_list_hits,
    running_stack,
    wait_until,
)

SCHEDULER_ENV = {
    "XROUTER_INPROCESS_SCHEDULER": "true",
    "XROUTER_HEALTH_INTERVAL_SECONDS": "1",
    "LOG_LEVEL": "INFO",
}


@pytest.fixture(scope="module")
def stack(django_db_setup: None) -> Iterator[Stack]:
    with running_stack(SCHEDULER_ENV, celery=False) as running:
        yield running


def route_around_down_primary(client: Client, primary: RunningEmulator) -> None:
    """Fail the primary and check every worker routes to the backup alone."""
    primary.control.set_config(fault="http_503")
    # One interval to probe, one second for every worker to re-read.
    time.sleep(2.5)
    before = chat_hits(primary)
    for _ in range(6):
        # A new connection each time, so both workers get some of them.
        response = client.chat("team/chat", headers={"Connection": "close"})
        assert response.headers["x-xrouter-attempts"] == "backup:200"
    assert chat_hits(primary) == before


def test_workers_probe_without_a_broker_and_split_the_ticks(
    client: Client, primary: RunningEmulator, stack: Stack
) -> None:
    """Both workers run the scheduler; the shared cache lets one probe per tick."""
    assert stack.gateway.log().count("in-process scheduler started") == 2
    primary_id = Deployment.objects.get(provider__name="primary", model__model_id="team/chat").pk

    def recorded() -> bool:
        health.reset()
        state = health.health_of(primary_id)
        return state is not None and state.healthy

    wait_until(recorded, timeout=5)
    start = model_list_hits(primary)
    time.sleep(4.0)
    probes = model_list_hits(primary) - start
    # Two deployments on the primary, <= 5 ticks: two schedulers without the
    # tick claim would have sent twice as many.
    assert 2 * 2 <= probes <= 2 * 5, probes
    route_around_down_primary(client, primary)
