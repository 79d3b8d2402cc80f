"""The monitoring stack in deploy/monitoring/ passes promtool's checks and tests."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import yaml

MONITORING = Path(__file__).resolve().parents[3] / "deploy" / "monitoring"
PROMTOOL = "/usr/bin/promtool"


def promtool(*args: str, cwd: Path = MONITORING) -> str:
    result = subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_check_config(tmp_path: Path) -> None:
    """The scrape config is valid once its token file is mounted beside it."""
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(MONITORING / name, tmp_path / name)
    (tmp_path / "xrouter-metrics-token").write_text("a-token")
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml", cwd=tmp_path)


def test_check_rules() -> None:
    assert "SUCCESS: 11 rules found" in promtool("check", "rules", "alerts.yml")


def test_rule_unit_tests_cover_every_alert() -> None:
    """promtool's unit tests pass, and each alert has at least one test."""
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")
    alerts = {
        rule["alert"]
        for group in yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    tested = {
        case["alertname"]
        for test in yaml.safe_load((MONITORING / "alerts_test.yml").read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    }
    assert alerts == tested


def test_grafana_dashboard_queries_only_exported_metrics() -> None:
    """Every panel queries a metric the gateway exports."""
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 14
    exported = (
        "xrouter_requests_total",
        "xrouter_request_duration_seconds_bucket",
        "xrouter_time_to_first_token_seconds_bucket",
        "xrouter_tokens_total",
        "xrouter_cost_rub_total",
        "xrouter_fallbacks_total",
        "xrouter_upstream_errors_total",
        "xrouter_deployment_healthy",
        "xrouter_breaker_open",
        "xrouter_limit_refusals_total",
        "xrouter_budgets_near_limit",
        "xrouter_usage_written_total",
        "xrouter_usage_dropped_total",
        "xrouter_usage_buffer_depth",
        "xrouter_limiter_fail_open_total",
    )
    for expr in exprs:
        assert any(name in expr for name in exported), expr
