"""Health probes: cheap, never billed, rate-limited, recorded for the router."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from routing import health, router
from routing.models import Deployment, UsageRecord
from routing.probes import deployment_ids_to_probe, deployment_probe, reset_probe_adapters
from routing.table import get_table
from routing.tasks import probe_all_deployments, probe_deployment

MODELS_PATH = "/v1/models"
CHAT_PATH = "/v1/chat/completions"


@pytest.fixture(autouse=True)
def _fresh_probe_adapters() -> Iterator[None]:
    reset_probe_adapters()
    yield
    reset_probe_adapters()


@pytest.fixture
def catalog(
    db: None, load_catalog: Callable[[str], None], upstream: Any, upstream_control: Any
) -> Any:
    """Two deployments of one model on the session emulator, the second via chat probes."""
    load_catalog(f"""
providers:
  - {{name: listed, kind: openai, base_url: "{upstream.base_url}/v1",
      api_key_env: TEST_UPSTREAM_KEY}}
  - {{name: chatty, kind: openai, base_url: "{upstream.base_url}/v1",
      api_key_env: TEST_UPSTREAM_KEY, options: {{health_check: chat}}}}
  - {{name: nokey, kind: openai, base_url: "{upstream.base_url}/v1",
      api_key_env: XR_TEST_MISSING_KEY}}
models:
  - id: team/chat
    deployments:
      - {{provider: listed, upstream: gpt-mock, priority: 0}}
      - {{provider: chatty, upstream: gpt-mock-large, priority: 0}}
  - id: team/keyless
    provider: nokey
    upstream: gpt-mock
""")
    return upstream_control


def _deployment(provider: str) -> int:
    return Deployment.objects.get(provider__name=provider).pk


def _hits(control: Any, path: str) -> int:
    return int(control.stats()["requests_by_path"].get(path, 0))


def test_probe_lists_models_and_records_health(catalog: Any) -> None:
    """A healthy probe asks for the models list once and records its latency."""
    result = deployment_probe(deployment_id=_deployment("listed"))
    assert result is not None and result.healthy is True
    assert result.latency_ms is not None and result.latency_ms > 0
    assert result.error == ""
    assert _hits(catalog, MODELS_PATH) == 1 and _hits(catalog, CHAT_PATH) == 0
    assert health.health_of(_deployment("listed")) == result
    assert UsageRecord.objects.count() == 0  # a probe is never billed


def test_chat_probe_asks_for_one_token(catalog: Any) -> None:
    """``health_check: chat`` sends a 1-token completion of the deployment's model."""
    result = deployment_probe(deployment_id=_deployment("chatty"))
    assert result is not None and result.healthy is True
    assert _hits(catalog, CHAT_PATH) == 1 and _hits(catalog, MODELS_PATH) == 0
    sent = catalog.stats()["last_request"]["json"]
    assert sent["model"] == "gpt-mock-large"
    assert sent["max_tokens"] == 1
    assert UsageRecord.objects.count() == 0


def test_failed_probe_marks_down_and_router_tries_it_last(catalog: Any) -> None:
    """An upstream 503 records the deployment as down with a readable error."""
    catalog.set_config(fault="http_503")
    listed = _deployment("listed")
    result = deployment_probe(deployment_id=listed)
    assert result is not None and result.healthy is False
    assert result.latency_ms is None
    assert "503" in result.error or "upstream" in result.error
    catalog.set_config(fault="none")
    deployment_probe(deployment_id=_deployment("chatty"))
    table = get_table()
    order = router.candidates(table, [table.models["team/chat"]])
    assert [c.deployment.deployment_id for c in order][-1] == listed


def test_probe_timeout_is_short(catalog: Any, settings: Any) -> None:
    """A hanging upstream fails the probe after the probe timeout, not the request one."""
    settings.XROUTER_HEALTH_TIMEOUT_SECONDS = 0.3
    catalog.set_config(fault="timeout", timeout_s=10)
    started = time.monotonic()
    result = deployment_probe(deployment_id=_deployment("listed"))
    elapsed = time.monotonic() - started
    assert result is not None and result.healthy is False
    assert "504" in result.error
    assert elapsed < 1.5


def test_one_probe_per_deployment_per_interval(catalog: Any, settings: Any) -> None:
    """A second probe in the same interval is skipped; ``force`` overrides it."""
    settings.XROUTER_HEALTH_INTERVAL_SECONDS = 3600
    listed = _deployment("listed")
    assert deployment_probe(deployment_id=listed) is not None
    assert deployment_probe(deployment_id=listed) is None
    assert _hits(catalog, MODELS_PATH) == 1
    assert deployment_probe(deployment_id=listed, force=True) is not None
    assert _hits(catalog, MODELS_PATH) == 2


def test_provider_without_credential_is_down_without_a_call(catalog: Any) -> None:
    """A provider whose credential is missing is recorded down with the reason."""
    result = deployment_probe(deployment_id=_deployment("nokey"))
    assert result is not None and result.healthy is False
    assert "XR_TEST_MISSING_KEY" in result.error
    assert catalog.stats()["requests_total"] == 0


def test_unknown_deployment_is_skipped(catalog: Any) -> None:
    """A deployment that is not routable (removed, disabled) is not probed."""
    assert deployment_probe(deployment_id=999_999) is None
    assert catalog.stats()["requests_total"] == 0


def test_tasks_probe_every_deployment(catalog: Any, settings: Any) -> None:
    """``probe_all_deployments`` fans out one probe per deployment (eager here)."""
    settings.XROUTER_HEALTH_INTERVAL_SECONDS = 3600
    ids = deployment_ids_to_probe()
    assert len(ids) == 3
    assert probe_all_deployments.delay().get() == 3
    assert all(health.health_of(i) is not None for i in ids)
    # Already probed in this interval: the task reports it skipped.
    assert probe_deployment.delay(ids[0]).get() is None


def _many_models(upstream: Any, models: int) -> str:
    """``models`` models, each on both providers; chat probes name two upstreams."""
    lines = [
        "providers:",
        f'  - {{name: listed, kind: openai, base_url: "{upstream.base_url}/v1",',
        "      api_key_env: TEST_UPSTREAM_KEY}",
        f'  - {{name: chatty, kind: openai, base_url: "{upstream.base_url}/v1",',
        "      api_key_env: TEST_UPSTREAM_KEY, options: {health_check: chat}}",
        "models:",
    ]
    for i in range(models):
        upstream_model = "gpt-mock" if i % 2 else "gpt-mock-large"
        lines += [
            f"  - id: many/m{i:03d}",
            "    deployments:",
            f"      - {{provider: listed, upstream: {upstream_model}, priority: 0}}",
            f"      - {{provider: chatty, upstream: {upstream_model}, priority: 1}}",
        ]
    return "\n".join(lines) + "\n"


def test_a_round_asks_each_question_once_and_records_every_deployment(
    db: None,
    load_catalog: Callable[[str], None],
    upstream: Any,
    upstream_control: Any,
    settings: Any,
) -> None:
    """40 deployments, 3 distinct questions: 3 upstream calls, 40 results.

    The models list is the provider's, whatever the model; a chat probe is
    the same request for every deployment of one upstream model.
    """
    settings.XROUTER_HEALTH_INTERVAL_SECONDS = 3600
    load_catalog(_many_models(upstream, 20))
    ids = deployment_ids_to_probe()
    assert len(ids) == 40
    assert probe_all_deployments.delay().get() == 3
    assert _hits(upstream_control, MODELS_PATH) == 1
    assert _hits(upstream_control, CHAT_PATH) == 2
    assert all(health.health_of(i) is not None for i in ids)
    # Any deployment of an asked question is skipped for the rest of the interval.
    assert all(probe_deployment.delay(i).get() is None for i in ids)
    assert upstream_control.stats()["requests_total"] == 3


def test_a_dead_provider_marks_all_its_deployments_down(
    db: None,
    load_catalog: Callable[[str], None],
    upstream: Any,
    upstream_control: Any,
    settings: Any,
) -> None:
    """One failed models list is every deployment of that provider failing."""
    settings.XROUTER_HEALTH_INTERVAL_SECONDS = 3600
    load_catalog(_many_models(upstream, 6))
    upstream_control.set_config(fault="http_503")
    listed = list(Deployment.objects.filter(provider__name="listed").values_list("pk", flat=True))
    result = deployment_probe(deployment_id=listed[-1])
    assert result is not None and result.healthy is False
    states = [health.health_of(i) for i in listed]
    assert all(s is not None and not s.healthy for s in states)
    # The other provider's deployments were not answered for.
    chatty = Deployment.objects.filter(provider__name="chatty").values_list("pk", flat=True)
    assert all(health.health_of(i) is None for i in chatty)
