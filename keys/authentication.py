"""DRF authentication for the management API (``/api/v1/``) by management key.

A script sends ``Authorization: Bearer xr_live_...`` with a key of kind
``management``; the key resolves through the same cache tiers as the
gateway (:func:`keys.auth.resolve_management_key`), so a revoked key stops
working here within the same bound. Standard (gateway) keys are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from keys.auth import KeyPrincipal, resolve_management_key
from xrouter_site.errors import AuthenticationFailed as KeyAuthenticationFailed


@dataclass(frozen=True)
class ManagementKeyUser:
    """``request.user`` for a call made with a management key.

    It stands for the key's team, not a person: views read the team from
    ``request.auth`` (the :class:`~keys.auth.KeyPrincipal`).
    """

    principal: KeyPrincipal
    is_authenticated: bool = True
    is_anonymous: bool = False
    is_active: bool = True
    is_staff: bool = False
    is_superuser: bool = False
    pk: None = None

    def __str__(self) -> str:
        return f"management key {self.principal.prefix}"


class ManagementKeyAuthentication(authentication.BaseAuthentication):
    """Authenticate ``Authorization: Bearer <management key>``.

    Requests without a bearer header fall through to the next class
    (session); a bearer header that does not name a usable management key
    fails with one 401 whatever the cause.
    """

    keyword = "bearer"

    def authenticate(self, request: Request) -> tuple[ManagementKeyUser, KeyPrincipal] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _sep, credential = header.partition(" ")
        if scheme.lower() != self.keyword:
            return None
        try:
            principal = resolve_management_key(credential.strip())
        except KeyAuthenticationFailed:
            raise exceptions.AuthenticationFailed(
                "Invalid management key. Pass a management key as 'Authorization: Bearer <key>'."
            ) from None
        return ManagementKeyUser(principal=principal), principal

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="xrouter"'


class ManagementKeyScheme(OpenApiAuthenticationExtension):
    """Describe management-key auth in the OpenAPI schema (HTTP bearer)."""

    target_class = ManagementKeyAuthentication
    name = "managementKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A management key: `createapikey --team SLUG --name N --management`.",
        }
