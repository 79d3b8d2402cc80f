"""OAuth access tokens on the management API (``/api/v1/``), with scopes.

A third-party app that a user authorized sends ``Authorization: Bearer
<access token>``. :class:`OAuthTokenAuthentication` resolves the token to
the user and the team the grant was made for: the team of the hidden key
of kind ``oauth`` that the consent bound to (application, user), see
accounts.oauth.services. The token never acts for more than the user can:
writes still need an owner or admin role in that team, and a user who left
the team, was deactivated or revoked the app gets 401.

Every lookup reads the database. The management API is not the hot path,
and reading the rows each time makes a revocation effective on the very
next request (RFC 7009 2.1) without relying on cache eviction.

:class:`OAuthScopePermission` maps HTTP methods to scopes and refuses a
token without one of them with 403 ``insufficient_scope`` (RFC 6750 3.1).
Callers authenticated otherwise (management key, session) pass through.
A view that accepts OAuth tokens lists the scopes it honours; a view that
lists none refuses every OAuth token, so a scope can never leak onto an
endpoint that forgot to declare it. Usage on another view::

    from rest_framework.settings import api_settings

    from accounts.oauth.api_auth import (
        USAGE_READ,
        OAuthAccess,
        OAuthScopePermission,
        OAuthTokenAuthentication,
    )

    class GenerationApi(ManagementApiView):
        # OAuth first: it passes ``xr_`` keys on to the key classes.
        authentication_classes = [OAuthTokenAuthentication, AnyKeyAuthentication,
                                  SessionAuthentication]
        permission_classes = [*api_settings.DEFAULT_PERMISSION_CLASSES,
                              OAuthScopePermission]
        oauth_read_scopes = (USAGE_READ,)
        oauth_write_scopes = ()

        def get(self, request):
            if isinstance(request.auth, OAuthAccess):
                team_id = request.auth.team.pk  # the grant's team, not the session's
            ...

Views that subclass ``keys.api.ManagementApiView`` inherit both classes and
``keys:read``/``keys:write``: override ``oauth_read_scopes`` and
``oauth_write_scopes`` there (and read the team from ``request.auth``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from oauth2_provider.models import get_access_token_model
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from accounts.models import Membership, Team, User
from accounts.oauth.services import oauth_principal_digest
from accounts.oauth.tokens import token_checksum
from accounts.roles import CONSENT_ACTIONS, consentable_scopes
from keys.models import ApiKey
from keys.principal import parse_bearer

logger = logging.getLogger(__name__)

AccessToken = get_access_token_model()

KEYS_READ = "keys:read"
KEYS_WRITE = "keys:write"
USAGE_READ = "usage:read"

REALM = 'Bearer realm="xrouter"'
# DOT's tokens are 30 characters; anything far longer is not ours.
_MAX_TOKEN_LENGTH = 512
_INVALID = "Invalid, expired or revoked access token."


@dataclass(frozen=True)
class OAuthAccess:
    """``request.auth`` for a call made with an OAuth access token.

    ``team`` is the team the user consented for and ``role`` their role in
    it now; ``scopes`` are what the token was granted.
    """

    user: User
    team: Team
    role: str
    application_id: int
    client_id: str
    scopes: frozenset[str]
    expires: datetime

    @property
    def can_manage(self) -> bool:
        """Return True if the user may change the team's keys (owner or admin)."""
        return self.role in (Membership.Role.OWNER, Membership.Role.ADMIN)

    def has_any_scope(self, scopes: Sequence[str]) -> bool:
        """Return True if the token was granted at least one of ``scopes``."""
        return any(scope in self.scopes for scope in scopes)


class InsufficientScope(exceptions.PermissionDenied):
    """403 with RFC 6750's ``insufficient_scope`` code and challenge."""

    default_code = "insufficient_scope"

    def __init__(self, scopes: Sequence[str]) -> None:
        if scopes:
            message = f"This access token lacks the '{scopes[0]}' scope."
            challenge = f'{REALM}, error="insufficient_scope", scope="{scopes[0]}"'
        else:
            message = "OAuth access tokens are not accepted here."
            challenge = f'{REALM}, error="insufficient_scope"'
        super().__init__(message)
        # keys.api_errors.exception_handler copies it into WWW-Authenticate.
        self.auth_header = challenge


def _bearer_token(request: Request) -> str | None:
    """Return the bearer credential if it is not an ``xr_`` key, else None."""
    credential = parse_bearer(request.META.get("HTTP_AUTHORIZATION", ""))
    if not credential or credential.startswith("xr_"):
        return None
    return credential


def oauth_access_resolve(token: str) -> OAuthAccess | None:
    """Return what ``token`` may act as on the management API, or None.

    None covers every reason alike (unknown, expired, revoked, inactive
    user, no team binding, user no longer in that team), so the 401 tells
    a prober nothing.
    """
    if len(token) > _MAX_TOKEN_LENGTH:
        return None
    access = (
        AccessToken.objects.select_related("user", "application")
        .filter(token_checksum=token_checksum(token))
        .first()
    )
    if access is None or access.user is None or access.application is None:
        return None
    if access.is_expired() or not access.user.is_active:
        return None
    binding = (
        ApiKey.objects.select_related("team")
        .filter(
            key_hash=oauth_principal_digest(
                application_id=access.application_id, user_id=access.user_id
            ),
            kind=ApiKey.Kind.OAUTH,
        )
        .first()
    )
    if binding is None or not binding.is_usable():
        # Revoked or disabled in the dashboard, or never bound: the consent
        # is the only record of which team the user meant.
        return None
    membership = Membership.objects.filter(user_id=access.user_id, team_id=binding.team_id).first()
    scopes = frozenset(access.scope.split())
    if membership is None or not scopes & set(CONSENT_ACTIONS) <= consentable_scopes(
        membership.role
    ):
        # Out of the team, or demoted below what the token carries.
        return None
    return OAuthAccess(
        user=access.user,
        team=binding.team,
        role=str(membership.role),
        application_id=access.application_id,
        client_id=access.application.client_id,
        scopes=scopes,
        expires=access.expires,
    )


class OAuthTokenAuthentication(authentication.BaseAuthentication):
    """Authenticate ``Authorization: Bearer <OAuth access token>``.

    ``xr_`` keys and requests without a bearer header fall through to the
    next class (management key, session). Put this class first: the key
    class answers 401 to every bearer value that is not a management key.
    Only the header is read; a token in the query string or body is never
    accepted (RFC 9700 2.6).
    """

    def authenticate(self, request: Request) -> tuple[User, OAuthAccess] | None:
        """Return (user, access) for a valid token, None when not ours."""
        token = _bearer_token(request)
        if token is None:
            return None
        access = oauth_access_resolve(token)
        if access is None:
            raise exceptions.AuthenticationFailed(_INVALID)
        return access.user, access

    def authenticate_header(self, request: Request) -> str:
        """Return the 401 challenge; name ``invalid_token`` if one was sent."""
        if _bearer_token(request) is not None:
            return f'{REALM}, error="invalid_token"'
        return REALM


class OAuthScopePermission(permissions.BasePermission):
    """Require one of the view's scopes when the caller is an OAuth token.

    Safe methods need one of ``view.oauth_read_scopes``, others one of
    ``view.oauth_write_scopes``; a missing attribute means no scope will do.
    Other callers are left to the remaining permission classes.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        """Return True or raise :class:`InsufficientScope`."""
        access = request.auth
        if not isinstance(access, OAuthAccess):
            return True
        attribute = (
            "oauth_read_scopes"
            if request.method in permissions.SAFE_METHODS
            else "oauth_write_scopes"
        )
        accepted: Sequence[str] = tuple(getattr(view, attribute, ()))
        if accepted and access.has_any_scope(accepted):
            return True
        logger.info(
            "oauth token lacks scope",
            extra={"client_id": access.client_id, "required": list(accepted)},
        )
        raise InsufficientScope(accepted)


class OAuthTokenScheme(OpenApiAuthenticationExtension):
    """Describe OAuth tokens in the OpenAPI schema, with each operation's scopes."""

    target_class = OAuthTokenAuthentication
    name = "oauth2"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        """Return the authorization-code flow with the management scopes."""
        from accounts.oauth.scopes import scope_labels

        labels = scope_labels()
        return {
            "type": "oauth2",
            "description": (
                "An access token from the authorization-code flow with PKCE (S256). "
                "It acts for the team the user consented for, with no more rights "
                "than the user has there."
            ),
            "flows": {
                "authorizationCode": {
                    "authorizationUrl": "/oauth/authorize/",
                    "tokenUrl": "/oauth/token/",
                    "refreshUrl": "/oauth/token/",
                    "scopes": {s: labels[s] for s in (KEYS_READ, KEYS_WRITE, USAGE_READ)},
                }
            },
        }

    def get_security_requirement(self, auto_schema: Any) -> dict[str, list[str]]:
        """Return the first scope this operation accepts."""
        attribute = (
            "oauth_read_scopes"
            if auto_schema.method in permissions.SAFE_METHODS
            else "oauth_write_scopes"
        )
        accepted = tuple(getattr(auto_schema.view, attribute, ()))
        return {self.name: list(accepted[:1])}
