"""Routing through the gateway: fallback, aliases, attempts, billing once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from providers.emulators.testing import start_emulator
from routing.breaker import breakers
from routing.models import UsageRecord
from routing.usage import records as usage
from tests.conftest import LiveGateway


@pytest.fixture(scope="module")
def backup() -> Iterator[Any]:
    emulator = start_emulator("openai", stream_tokens=6, chunk_interval_ms=5)
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def routed(
    gateway: LiveGateway, load_catalog: Any, upstream: Any, backup: Any, settings: Any
) -> LiveGateway:
    backup.control.reset()
    settings.XROUTER_BREAKER_FAILURES = 3
    settings.XROUTER_RETRY_BACKOFF_BASE_SECONDS = 0.001
    breakers.reset()
    load_catalog(f"""
providers:
  - {{name: primary, kind: openai, base_url: "{upstream.base_url}/v1",
      api_key_env: TEST_UPSTREAM_KEY, options: {{read_timeout: 1}}}}
  - {{name: backup, kind: openai, base_url: "{backup.base_url}/v1",
      api_key_env: TEST_UPSTREAM_KEY}}
models:
  - id: team/chat
    pricing: {{prompt: 1.5, completion: 3}}
    deployments:
      - {{provider: primary, upstream: gpt-mock, priority: 0}}
      - {{provider: backup, upstream: gpt-mock-large, priority: 1}}
  - id: solo/primary
    provider: primary
    upstream: gpt-mock
    fallbacks: [solo/backup]
  - id: solo/backup
    provider: backup
    upstream: gpt-mock
    pricing: {{prompt: 2, completion: 2}}
  - id: only/primary
    provider: primary
    upstream: gpt-mock
  - id: team/cheap
    fallbacks: [only/primary, solo/backup]
""")
    yield gateway
    breakers.reset()


def _usage_rows() -> list[UsageRecord]:
    sink = usage.stream_sink()
    if sink is not None:
        while sink.consume_once(block_ms=10):
            pass
    usage.flush_all()
    return list(UsageRecord.objects.order_by("created_at"))


def ask(gateway: LiveGateway, model: str, **kwargs: Any) -> Any:
    return gateway.client().chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hello"}], **kwargs
    )


def test_primary_503_is_served_by_the_fallback(
    routed: LiveGateway, upstream_control: Any, backup: Any
) -> None:
    upstream_control.set_config(fault="http_503")
    raw = ask(routed, "team/chat")
    assert raw.headers["x-xrouter-provider"] == "backup"
    assert raw.headers["x-xrouter-attempts"] == "primary:503, backup:200"
    assert raw.parse().model == "team/chat"
    [row] = _usage_rows()
    assert row.provider == "backup"
    assert [a["provider"] for a in row.attempts] == ["primary", "backup"]
    assert [a["status"] for a in row.attempts] == [503, 200]
    assert backup.control.stats()["requests_total"] == 1


def test_primary_timeout_falls_back_within_the_deadline(
    routed: LiveGateway, upstream_control: Any
) -> None:
    import time

    upstream_control.set_config(fault="timeout")
    started = time.monotonic()
    raw = ask(routed, "team/chat")
    assert time.monotonic() - started < 3
    assert raw.headers["x-xrouter-attempts"] == "primary:504, backup:200"


def test_both_down_is_503_naming_both_attempts(
    routed: LiveGateway, upstream_control: Any, backup: Any
) -> None:
    upstream_control.set_config(fault="http_500")
    backup.control.set_config(fault="http_503")
    with pytest.raises(openai.InternalServerError) as info:
        ask(routed, "team/chat")
    assert info.value.status_code == 503
    body = info.value.body
    assert body["code"] == "all_upstreams_failed"
    assert "primary" in body["message"] and "backup" in body["message"]
    assert info.value.response.headers["x-xrouter-attempts"] == "primary:502, backup:503"
    [row] = _usage_rows()
    assert row.status == 503 and row.cost_rub == 0


def test_request_errors_do_not_fall_back(
    routed: LiveGateway, upstream_control: Any, backup: Any
) -> None:
    upstream_control.set_config(fault="http_400")
    with pytest.raises(openai.BadRequestError):
        ask(routed, "team/chat")
    assert backup.control.stats()["requests_total"] == 0


def test_models_list_is_tried_in_order(routed: LiveGateway, upstream_control: Any) -> None:
    upstream_control.set_config(fault="http_503")
    raw = ask(routed, "only/primary", extra_body={"models": ["solo/backup"]})
    assert raw.parse().model == "solo/backup"
    assert raw.headers["x-xrouter-attempts"] == "primary:503, backup:200"


def test_unknown_model_in_models_list_is_named(routed: LiveGateway) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        ask(routed, "only/primary", extra_body={"models": ["nobody/here"]})
    assert info.value.body["param"] == "models[0]"


def test_catalog_fallbacks_and_aliases(routed: LiveGateway, upstream_control: Any) -> None:
    upstream_control.set_config(fault="http_503")
    assert ask(routed, "solo/primary").parse().model == "solo/backup"
    assert ask(routed, "team/cheap").parse().model == "solo/backup"
    upstream_control.set_config(fault="none")
    assert ask(routed, "team/cheap").parse().model == "only/primary"


def test_only_the_serving_attempt_is_billed(routed: LiveGateway, upstream_control: Any) -> None:
    upstream_control.set_config(fault="http_503")
    completion = ask(routed, "solo/primary").parse()
    [row] = _usage_rows()
    # Billed at the serving model's prices (2 + 2 RUB per 1K), nothing for the failure.
    expected = (completion.usage.prompt_tokens * 2 + completion.usage.completion_tokens * 2) / 1000
    assert float(row.cost_rub) == pytest.approx(expected, abs=1e-6)
    assert row.served_model == "solo/backup" and row.requested_model == "solo/primary"


def test_stream_fails_over_before_the_first_byte(
    routed: LiveGateway, upstream_control: Any
) -> None:
    upstream_control.set_config(fault="http_503")
    stream = routed.client().chat.completions.with_raw_response.create(
        model="team/chat", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert stream.headers["x-xrouter-provider"] == "backup"
    text = "".join(c.choices[0].delta.content or "" for c in stream.parse() if c.choices)
    assert text.endswith("hi")


def test_stream_cut_after_the_first_byte_does_not_switch(
    routed: LiveGateway, upstream_control: Any, backup: Any
) -> None:
    upstream_control.set_config(fault="cut", stream_tokens=10)
    stream = routed.client().chat.completions.create(
        model="team/chat", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    with pytest.raises(openai.APIError):
        for _chunk in stream:
            pass
    assert backup.control.stats()["requests_total"] == 0
    [row] = _usage_rows()
    assert row.stream_complete is False and row.provider == "primary"
    assert row.completion_tokens > 0  # billed for what was delivered


def test_breaker_opens_and_skips_the_dead_deployment(
    routed: LiveGateway, upstream_control: Any
) -> None:
    upstream_control.set_config(fault="http_503")
    for _ in range(3):
        ask(routed, "team/chat")
    assert upstream_control.stats()["requests_total"] == 3
    raw = ask(routed, "team/chat")
    assert upstream_control.stats()["requests_total"] == 3  # skipped, not called
    assert raw.headers["x-xrouter-attempts"] == "primary:503, backup:200"
    assert breakers.state(raw_deployment_id(routed)) == "open"


def raw_deployment_id(_: Any) -> int:
    from routing.models import Deployment

    return Deployment.objects.get(provider__name="primary", model__model_id="team/chat").pk


def test_the_total_deadline_cuts_a_hanging_attempt(
    gateway: LiveGateway, upstream_control: Any, settings: Any
) -> None:
    """The upstream's own read timeout (120 s here) yields to the deadline."""
    import time

    settings.XROUTER_REQUEST_DEADLINE_SECONDS = 1.5
    upstream_control.set_config(fault="timeout")
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as info:
        gateway.client(timeout=30).chat.completions.create(
            model="local/mock", messages=[{"role": "user", "content": "x"}]
        )
    elapsed = time.monotonic() - started
    assert info.value.status_code == 504
    assert 1.4 < elapsed < 3, elapsed
