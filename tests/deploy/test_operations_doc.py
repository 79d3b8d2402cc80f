"""docs/operations.md documents every XROUTER_* setting and every alert."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")


def test_every_xrouter_setting_is_in_the_configuration_reference() -> None:
    sources = [ROOT / "xrouter_site" / "settings.py", ROOT / "deploy" / "gunicorn.conf.py"]
    names = set()
    for source in sources:
        names |= set(re.findall(r"[\"'](XROUTER_[A-Z0-9_]+)[\"']", source.read_text()))
    assert len(names) > 40
    missing = sorted(name for name in names if f"`{name}" not in DOC)
    assert missing == [], f"add these to docs/operations.md section 2: {missing}"


def test_every_alert_has_a_runbook_row() -> None:
    rules = yaml.safe_load((ROOT / "deploy" / "monitoring" / "alerts.yml").read_text())
    alerts = [rule["alert"] for group in rules["groups"] for rule in group["rules"]]
    assert alerts
    missing = [alert for alert in alerts if f"| `{alert}`" not in DOC]
    assert missing == [], f"add these to docs/operations.md section 10: {missing}"
