"""The demo catalog of ``make run`` shows what the README promises."""

from __future__ import annotations

from datetime import date

from routing.management.commands.serve import DEMO_MODELS
from routing.services import parse_catalog


def test_demo_deprecated_branch_has_the_dates_for_deprecation_and_sunset() -> None:
    """Without since/until the gateway can send only ``Warning`` for ``:deprecated``."""
    catalog = parse_catalog("providers: []\n" + DEMO_MODELS)
    (yandex,) = [m for m in catalog["models"] if m["id"] == "yandex/yandexgpt"]
    deprecated = yandex["versions"]["deprecated"]
    assert deprecated["since"] == date(2025, 2, 9)
    assert deprecated["until"] > date(2026, 12, 1)
