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
import requests

from providers.emulators.testing import RunningEmulator
from routing import health
from routing.models import Deployment
from tests.e2e.conftest import (
    REREAD_SECONDS,
    Client,
    Stack,
    chat_hits,
    running_stack,
    watch_probes,
)
from tests.waiting import wait_until

INTERVAL = 1.0
SCHEDULER_ENV = {
    "XROUTER_INPROCESS_SCHEDULER": "true",
    "XROUTER_HEALTH_INTERVAL_SECONDS": str(INTERVAL),
    "LOG_LEVEL": "INFO",
}
#: team/chat and only/primary are deployed on the primary.
PRIMARY_DEPLOYMENTS = 2
#: Both ask the primary the same question (its model list): one call per
#: interval answers for both (routing/probes.py groups deployments by question).
PRIMARY_PROBES = 1


@pytest.fixture(scope="module")
def stack(django_db_setup: None) -> Iterator[Stack]:
    with running_stack(SCHEDULER_ENV, celery=False) as running:
        yield running


def _primary_ids() -> list[int]:
    return list(Deployment.objects.filter(provider__name="primary").values_list("pk", flat=True))


def route_around_down_primary(client: Client, primary: RunningEmulator, stack: Stack) -> None:
    """Fail the primary and check every worker routes to the backup alone.

    No chat is sent before every worker knows the primary is down: one that
    reached it would count towards its breaker, and the breaker, not the
    health check, could then be what routes around it.
    """
    primary.control.set_config(fault="http_503")
    ids = _primary_ids()
    assert len(ids) == PRIMARY_DEPLOYMENTS
    if stack.env.get("REDIS_URL"):
        # One probe writes the shared result; the workers read it within a second.
        def shared_down() -> bool:
            health.reset()  # read the shared cache now, not this process's copy
            return all((s := health.health_of(i)) is not None and not s.healthy for i in ids)

        wait_until(shared_down, timeout=5, what="the shared health of the primary to say down")
        time.sleep(REREAD_SECONDS)  # the re-read bound under test, see REREAD_SECONDS
    else:
        # Each worker only knows its own probes; its /metrics shows its view,
        # the one its router reads.
        def down_here(response: requests.Response) -> bool:
            states = client.deployment_health(response)
            return all(states.get(str(i)) is False for i in ids)

        client.from_every_worker(
            client.metrics, down_here, what="the primary's deployments down in /metrics"
        )
    before = chat_hits(primary)

    def served_by_backup(response: requests.Response) -> bool:
        assert response.headers["x-xrouter-attempts"] == "backup:200"
        return True

    client.from_every_worker(
        lambda session: client.chat("team/chat", session=session),
        served_by_backup,
        what="a team/chat answer",
    )
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

    wait_until(recorded, timeout=5, what="a shared health result of the primary")
    # Two deployments on the primary, one scheduler's worth: two schedulers
    # without the tick claim would send twice as many.
    watch_probes(primary, interval=INTERVAL, per_tick=PRIMARY_PROBES, senders=1)
    route_around_down_primary(client, primary, stack)
