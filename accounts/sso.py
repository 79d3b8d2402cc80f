"""Single sign-on for the dashboard: OpenID Connect via mozilla-django-oidc.

The library runs the authorization code flow (with PKCE and a nonce) and
verifies the ID token against the provider's JWKS;
:class:`TeamMappingOidcBackend` decides who may come in. Each rule of
``XROUTER_SSO_TEAM_MAP`` grants a role in a team when a claim has a value
(``{"claim": "groups", "value": "acme-admins", "team": "acme", "role":
"admin"}``; a list claim matches when it contains the value, ``"value":
"*"`` matches any non-empty claim). A user no rule maps is refused, and no
account is created for them. Mapped users are created just in time (with
no usable password) and their mapped roles are brought up to date at
every login; memberships no rule covers (invitations) are left alone.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.text import slugify
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from accounts.models import Membership, User
from accounts.services import team_add_member, team_get_or_create

logger = logging.getLogger(__name__)

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


class TeamMappingOidcBackend(OIDCAuthenticationBackend):
    """Let in only users whose claims map to a team; create them just in time."""

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        if not claims.get("email"):
            logger.info("sso login refused", extra={"reason": "no e-mail claim"})
            return False
        if (
            not settings.XROUTER_SSO_TRUST_UNVERIFIED_EMAIL
            and claims.get("email_verified") is not True
        ):
            logger.info("sso login refused", extra={"reason": "e-mail not verified"})
            return False
        if not mapped_roles(claims, team_rules()):
            logger.info("sso login refused", extra={"reason": "no team mapping"})
            return False
        return True

    def get_username(self, claims: dict[str, Any]) -> str:
        base = str(claims.get("preferred_username") or claims["email"].split("@")[0])[:140]
        username = base
        suffix = 1
        while User.objects.filter(username=username).exists():
            suffix += 1
            username = f"{base}-{suffix}"
        return username

    @transaction.atomic
    def create_user(self, claims: dict[str, Any]) -> User:
        user = User.objects.create_user(self.get_username(claims), email=claims["email"])
        user.first_name = str(claims.get("given_name") or "")[:150]
        user.last_name = str(claims.get("family_name") or "")[:150]
        user.set_unusable_password()
        user.save()
        logger.info("sso user created", extra={"user_id": user.pk})
        return self.update_user(user, claims)

    @transaction.atomic
    def update_user(self, user: User, claims: dict[str, Any]) -> User:
        if not user.is_active:
            return user
        for slug, role in mapped_roles(claims, team_rules()).items():
            team, _created = team_get_or_create(slug=slug)
            team_add_member(team=team, user=user, role=role)
        return user


def _enabled() -> None:
    if not settings.XROUTER_SSO_ENABLED:
        raise Http404


def sso_start(request: HttpRequest) -> HttpResponse:
    """Send the browser to the provider (state, nonce and PKCE in the session)."""
    _enabled()
    return OIDCAuthenticationRequestView.as_view()(request)


def sso_callback(request: HttpRequest) -> HttpResponse:
    """Finish the flow: verify the provider's answer and log the user in (or refuse)."""
    _enabled()
    return OIDCAuthenticationCallbackView.as_view()(request)
