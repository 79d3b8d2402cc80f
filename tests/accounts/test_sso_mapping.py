"""SSO claim-to-team mapping rules and the settings checks (accounts/sso.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from accounts.sso import check_sso_settings, mapped_roles, team_rules

RULES = (
    '[{"claim": "groups", "value": "acme-admins", "team": "Acme", "role": "admin"},'
    ' {"claim": "groups", "value": "acme-owners", "team": "acme", "role": "owner"},'
    ' {"claim": "hd", "value": "*", "team": "everyone"}]'
)


def test_rules_map_claims_to_the_highest_role_per_team() -> None:
    rules = team_rules(RULES)
    assert [r.team for r in rules] == ["acme", "acme", "everyone"]
    assert mapped_roles({"groups": ["acme-admins", "acme-owners"]}, rules) == {"acme": "owner"}
    assert mapped_roles({"groups": ["acme-admins"], "hd": "corp"}, rules) == {
        "acme": "admin",
        "everyone": "member",
    }
    assert mapped_roles({"groups": "acme-admins"}, rules) == {"acme": "admin"}
    assert mapped_roles({"groups": ["marketing"], "hd": ""}, rules) == {}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{", "not JSON"),
        ('{"claim": "g"}', "JSON list"),
        ('[{"claim": "g", "value": "v"}]', "must be strings"),
        ('[{"claim": "g", "value": "v", "team": "t", "role": "boss"}]', "role must be one of"),
        ('[{"claim": "g", "value": "v", "team": "t", "extra": 1}]', "expected"),
        ('[{"claim": "g", "value": "v", "team": "!!!"}]', "usable slug"),
    ],
)
def test_malformed_rules_name_the_fault(raw: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        team_rules(raw)


def test_checks_refuse_a_site_nobody_can_log_in_to(settings: Any) -> None:
    settings.XROUTER_SSO_ENABLED = False
    settings.XROUTER_PASSWORD_LOGIN = False
    assert [e.id for e in check_sso_settings()] == ["accounts.E001"]
    settings.XROUTER_SSO_ENABLED = True
    settings.XROUTER_SSO_TEAM_MAP = "[]"
    assert [e.id for e in check_sso_settings()] == ["accounts.E003"]
    settings.XROUTER_SSO_TEAM_MAP = "nope"
    assert [e.id for e in check_sso_settings()] == ["accounts.E002"]
    settings.XROUTER_SSO_TEAM_MAP = RULES
    assert check_sso_settings() == []
