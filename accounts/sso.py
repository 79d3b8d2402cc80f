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

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from accounts.models import User
from accounts.services import team_add_member, team_get_or_create

# The rules and the settings check live apart (AccountsConfig.ready loads
# them in every process without mozilla-django-oidc); named here as before.
from accounts.sso_rules import TeamRule, check_sso_settings, mapped_roles, team_rules

__all__ = [
    "TeamMappingOidcBackend",
    "TeamRule",
    "check_sso_settings",
    "mapped_roles",
    "sso_callback",
    "sso_start",
    "team_rules",
]

logger = logging.getLogger(__name__)


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
