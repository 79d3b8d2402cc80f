"""SSO claim-to-team rules and their settings check (accounts/sso.py uses them).

Apart from :mod:`accounts.sso` so that ``AccountsConfig.ready()`` registers
the check in every process without importing mozilla-django-oidc, which
imports requests and PyJWT: ~1.8 MB of each gunicorn worker's RSS, and the
workers serve no login (issue 19, bench/profiles/memory-imports.txt).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register
from django.core.exceptions import ImproperlyConfigured
from django.utils.text import slugify

from accounts.models import Membership

_ROLE_ORDER: list[str] = [Membership.Role.MEMBER, Membership.Role.ADMIN, Membership.Role.OWNER]


@dataclass(frozen=True, slots=True)
class TeamRule:
    claim: str
    value: str
    team: str
    role: str

    def matches(self, claims: dict[str, Any]) -> bool:
        got = claims.get(self.claim)
        values = got if isinstance(got, list) else [got]
        values = [str(v) for v in values if v not in (None, "")]
        if self.value == "*":
            return bool(values)
        return self.value in values


def team_rules(raw: str | None = None) -> list[TeamRule]:
    """Parse ``XROUTER_SSO_TEAM_MAP``; raise ImproperlyConfigured naming the fault."""
    text = settings.XROUTER_SSO_TEAM_MAP if raw is None else raw
    try:
        data = json.loads(text or "[]")
    except json.JSONDecodeError as exc:
        raise ImproperlyConfigured(f"XROUTER_SSO_TEAM_MAP is not JSON: {exc}") from None
    if not isinstance(data, list):
        raise ImproperlyConfigured("XROUTER_SSO_TEAM_MAP must be a JSON list of rules")
    rules = []
    for i, item in enumerate(data):
        where = f"XROUTER_SSO_TEAM_MAP[{i}]"
        if not isinstance(item, dict) or set(item) - {"claim", "value", "team", "role"}:
            raise ImproperlyConfigured(f"{where}: expected {{claim, value, team, role}}")
        claim, value, team = item.get("claim"), item.get("value"), item.get("team")
        role = item.get("role", Membership.Role.MEMBER)
        if not (
            isinstance(claim, str)
            and claim
            and isinstance(value, str)
            and value
            and isinstance(team, str)
            and team
        ):
            raise ImproperlyConfigured(f"{where}: claim, value and team must be strings")
        if role not in Membership.Role.values:
            raise ImproperlyConfigured(
                f"{where}: role must be one of {', '.join(Membership.Role.values)}"
            )
        if not slugify(team):
            raise ImproperlyConfigured(f"{where}: team {team!r} is not a usable slug")
        rules.append(TeamRule(claim=claim, value=value, team=slugify(team), role=role))
    return rules


def mapped_roles(claims: dict[str, Any], rules: list[TeamRule]) -> dict[str, str]:
    """Return team slug -> role for ``claims``; the highest role wins per team."""
    roles: dict[str, str] = {}
    for rule in rules:
        if rule.matches(claims):
            current = roles.get(rule.team)
            if current is None or _ROLE_ORDER.index(rule.role) > _ROLE_ORDER.index(current):
                roles[rule.team] = rule.role
    return roles


@register()
def check_sso_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    if not settings.XROUTER_SSO_ENABLED and not settings.XROUTER_PASSWORD_LOGIN:
        errors.append(
            Error(
                "XROUTER_PASSWORD_LOGIN is false and single sign-on is not configured: "
                "nobody could log in.",
                id="accounts.E001",
            )
        )
    if settings.XROUTER_SSO_ENABLED:
        try:
            rules = team_rules()
        except ImproperlyConfigured as exc:
            errors.append(Error(str(exc), id="accounts.E002"))
        else:
            if not rules:
                errors.append(
                    Error(
                        "Single sign-on is on but XROUTER_SSO_TEAM_MAP maps nobody.",
                        id="accounts.E003",
                    )
                )
    return errors
