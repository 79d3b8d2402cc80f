"""Health checks end to end: beat -> Redis broker -> Celery worker -> cache -> router.

Beat runs ``probe_all_deployments`` every second here; the worker fans out
one probe per deployment; the gateway workers read the results from the
shared cache and route around a deployment that is down.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from providers.emulators.testing import RunningEmulator
from routing import health
from routing.models import Deployment
from tests.e2e.conftest import (
    BROKER_URL,
    REREAD_SECONDS,
    Client,
    Stack,
    celery_client,
    chat_hits,
    model_list_hits,
    running_stack,
    watch_probes,
)
from tests.waiting import wait_until

INTERVAL = 1.0
#: team/chat and only/primary are deployed on the primary. Both ask it the
#: same question (its model list): one call per interval answers for both
#: (routing/probes.py groups deployments by question).
PRIMARY_PROBES = 1


@pytest.fixture(scope="module")
def stack(django_db_setup: None) -> Iterator[Stack]:
    with running_stack({"XROUTER_HEALTH_INTERVAL_SECONDS": str(INTERVAL)}) as running:
        yield running


def _primary_id() -> int:
    return Deployment.objects.get(provider__name="primary", model__model_id="team/chat").pk


def _state(deployment_id: int) -> health.Health | None:
    health.reset()  # read the shared cache now, not this process's copy
    return health.health_of(deployment_id)


def test_celery_runs_on_the_redis_broker(client: Client, stack: Stack) -> None:
    """The worker answers over the broker, and the broker is this Redis database."""
    app = celery_client()
    try:
        replies = app.control.ping(timeout=1)
    finally:
        app.close()
    assert any(name.startswith("e2e-") for reply in replies for name in reply)
    keys = redis.Redis.from_url(BROKER_URL).keys("*")
    assert any(key.startswith(b"_kombu.binding.") for key in keys)


def test_probe_marks_down_within_an_interval_and_up_after_recovery(
    client: Client, primary: RunningEmulator, backup: RunningEmulator, stack: Stack
) -> None:
    """Down within one interval of the fault, up within one of the recovery."""
    primary_id = _primary_id()
    # Beat and worker are probing: the primary is healthy and has a latency.
    wait_until(
        lambda: (s := _state(primary_id)) is not None and s.healthy,
        timeout=5,
        what="a healthy probe result of the primary",
    )
    assert model_list_hits(primary) >= 1
    assert chat_hits(primary) == 0  # the default probe lists models, never chats

    primary.control.set_config(fault="http_503")
    down_after = wait_until(
        lambda: (s := _state(primary_id)) is not None and not s.healthy,
        timeout=5,
        what="the primary marked down",
    )
    error = _state(primary_id)
    assert error is not None and "503" in error.error
    # Within one interval, plus the probe's own trip through the broker (a
    # loaded CI machine may add a few hundred ms).
    assert down_after < INTERVAL + 1.0, stack.logs()

    # The gateway workers re-read health at most once a second (the bound
    # under test, not a guess; no chat may probe them sooner: it would count
    # towards the primary's breaker). Then the backup is tried first and the
    # primary not at all.
    time.sleep(REREAD_SECONDS)
    before = chat_hits(primary)
    for _ in range(4):
        response = client.chat("team/chat")
        assert response.headers["x-xrouter-attempts"] == "backup:200"
    assert chat_hits(primary) == before

    primary.control.set_config(fault="none")
    up_after = wait_until(
        lambda: (s := _state(primary_id)) is not None and s.healthy,
        timeout=5,
        what="the primary marked up again",
    )
    assert up_after < INTERVAL + 1.0, stack.logs()
    time.sleep(REREAD_SECONDS)  # the re-read bound again
    for _ in range(4):
        response = client.chat("team/chat")
        assert response.headers["x-xrouter-attempts"] == "primary:200"
    print(f"\nmarked down after {down_after:.2f}s, up after {up_after:.2f}s")


def test_probes_are_rate_limited_to_one_per_interval(
    client: Client, primary: RunningEmulator
) -> None:
    """Whatever beat and the worker do, each deployment is probed once a second at most."""
    wait_until(lambda: model_list_hits(primary) >= 1, timeout=5, what="a first probe")
    # Beat and the worker together are one sender of each tick's probes.
    watch_probes(primary, interval=INTERVAL, per_tick=PRIMARY_PROBES, senders=1)
