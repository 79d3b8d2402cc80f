"""``/metrics``: protected, aggregated across gunicorn workers, scraped by Prometheus.

The process tests run the real gateway (gunicorn, 2 gevent workers) against
the OpenAI emulator, and a real Prometheus (Debian's package) scraping it
every second.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from keys.services import CreatedKey
from tests.conftest import openai_catalog
from tests.gateway_process import free_port, running_gateway
from tests.waiting import wait_until

TOKEN = "metrics-token-for-tests-0123456789"  # noqa: S105 - a test value


def samples(text: str, name: str) -> list[Any]:
    return [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def test_metrics_need_the_token(settings: Any, db: None) -> None:
    """With a token configured: 401 without it or with a wrong one, 200 with it."""
    settings.XROUTER_METRICS_TOKEN = TOKEN
    client = Client()
    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope").status_code == 401
    ok = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert ok.status_code == 200
    assert ok["Content-Type"].startswith("text/plain; version=")
    assert "xrouter_usage_buffer_depth" in ok.content.decode()


def test_metrics_allow_list_and_loopback_default(settings: Any, db: None) -> None:
    """An allow-list admits its networks; with nothing configured only loopback."""
    settings.XROUTER_METRICS_TOKEN = ""
    settings.XROUTER_METRICS_ALLOW = ["10.0.0.0/8", "192.0.2.7"]
    client = Client()
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.7").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.8").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    settings.XROUTER_METRICS_ALLOW = []
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403
    # X-Forwarded-For is never trusted for access.
    forwarded = client.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert forwarded.status_code == 403


def test_state_gauges_come_from_the_catalog(
    settings: Any, db: None, load_catalog: Callable[[str], None]
) -> None:
    """Health and breaker gauges list every enabled deployment with its provider."""
    from routing.health import health_record
    from routing.models import Deployment

    settings.XROUTER_METRICS_TOKEN = ""
    load_catalog(openai_catalog("http://127.0.0.1:9"))
    deployment = Deployment.objects.get(model__model_id="local/mock")
    health_record(deployment_id=deployment.pk, healthy=False, latency_ms=None, error="down")
    text = Client().get("/metrics").content.decode()
    healthy = {s.labels["deployment"]: s.value for s in samples(text, "xrouter_deployment_healthy")}
    assert healthy[str(deployment.pk)] == 0
    assert len(healthy) == Deployment.objects.filter(enabled=True).count()
    breaker = samples(text, "xrouter_breaker_open")
    assert {s.labels["provider"] for s in breaker} == {"local"}
    assert {s.value for s in breaker} == {0}
    budgets = {s.labels["scope"]: s.value for s in samples(text, "xrouter_budgets_near_limit")}
    assert budgets == {"key": 0, "team": 0}


@pytest.fixture
def emulator() -> Iterator[Any]:
    from providers.emulators.testing import start_emulator

    running = start_emulator("openai")
    try:
        yield running
    finally:
        running.stop()


def chat(url: str, key: str) -> str:
    response = requests.post(
        url + "/v1/chat/completions",
        json={"model": "local/mock", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {key}", "Connection": "close"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.headers["X-Served-By"]


def scrape(url: str) -> str:
    response = requests.get(
        url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    )
    assert response.status_code == 200
    return response.text


def chat_count(text: str) -> float:
    return sum(
        s.value
        for s in samples(text, "xrouter_requests_total")
        if s.labels["endpoint"] == "chat" and s.labels["status"] == "200"
    )


def prom_query(base: str, query: str, at: float | None = None) -> float | None:
    params: dict[str, Any] = {"query": query}
    if at is not None:
        params["time"] = at
    result = requests.get(base + "/api/v1/query", params=params, timeout=5).json()
    assert result["status"] == "success", result
    vector = result["data"]["result"]
    return float(vector[0]["value"][1]) if vector else None


@pytest.mark.slow
def test_two_workers_counted_and_prometheus_scrapes_them(
    transactional_db: None,
    emulator: Any,
    load_catalog: Callable[[str], None],
    make_key: Callable[..., CreatedKey],
) -> None:
    """/metrics of either worker counts both; Prometheus reads the exact count."""
    load_catalog(openai_catalog(emulator.base_url))
    key = make_key().plaintext
    env = {"XROUTER_METRICS_TOKEN": TOKEN, "XROUTER_DEBUG_SERVED_BY": "true"}
    with running_gateway(workers=2, env=env) as gateway:
        assert requests.get(gateway.url + "/metrics", timeout=5).status_code == 401
        first = 40
        with ThreadPoolExecutor(8) as pool:
            served_by = set(pool.map(lambda _: chat(gateway.url, key), range(first)))
        assert len(served_by) == 2, f"one worker served everything: {served_by}"
        # Any worker may answer the scrape; every answer counts both.
        for _ in range(4):
            text = scrape(gateway.url)
            assert chat_count(text) == first
        for name in ("xrouter_usage_buffer_depth", "xrouter_usage_dropped_total"):
            assert samples(text, name), name
        assert samples(text, "xrouter_deployment_healthy")
        assert samples(text, "xrouter_breaker_open")

        with tempfile.TemporaryDirectory(prefix="xr-prom-") as tmp:
            base = _start_prometheus(Path(tmp), gateway.url)
            selector = 'xrouter_requests_total{job="xrouter",endpoint="chat",status="200"}'
            query = f"sum({selector})"
            try:
                wait_until(
                    lambda: prom_query(base.url, query) == first,
                    timeout=30,
                    interval=0.25,
                    what="the first scrape",
                )
                start = time.time()
                second = 30
                with ThreadPoolExecutor(6) as pool:
                    list(pool.map(lambda _: chat(gateway.url, key), range(second)))
                wait_until(
                    lambda: prom_query(base.url, query) == first + second,
                    timeout=30,
                    interval=0.25,
                    what="a new scrape",
                )
                start, end = round(start, 3), round(time.time(), 3)
                # The average request rate over [start, end] as PromQL computes it.
                rate = prom_query(
                    base.url, f"({query} - sum({selector} @ {start})) / {end - start}", at=end
                )
                assert rate == pytest.approx(second / (end - start), rel=1e-9)
                live = prom_query(base.url, f"sum(rate({selector}[30s]))")
                assert live is not None and live > 0
                up = prom_query(base.url, 'up{job="xrouter"}')
                assert up == 1
            finally:
                base.stop()


class _Prometheus:
    def __init__(self, url: str, process: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.process = process

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _start_prometheus(tmp: Path, target_url: str) -> _Prometheus:
    """Start Prometheus on a loopback port, scraping ``target_url`` every second."""
    (tmp / "token").write_text(TOKEN)
    target = target_url.removeprefix("http://")
    (tmp / "prometheus.yml").write_text(
        f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: xrouter
    metrics_path: /metrics
    authorization:
      type: Bearer
      credentials_file: {tmp / "token"}
    static_configs:
      - targets: ["{target}"]
"""
    )
    port = free_port()
    log = open(tmp / "prometheus.log", "wb")  # noqa: SIM115 - closed with the process dir
    process = subprocess.Popen(
        [
            "/usr/bin/prometheus",
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    prometheus = _Prometheus(f"http://127.0.0.1:{port}", process)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError((tmp / "prometheus.log").read_text()[-2000:])
        try:
            return requests.get(prometheus.url + "/-/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_until(ready, timeout=20, interval=0.25, what="Prometheus to start")
    return prometheus
