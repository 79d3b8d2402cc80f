"""DRF authentication by API key, for the REST APIs under ``/api/v1/``.

A script sends ``Authorization: Bearer xr_live_...``; the key resolves
through the same cache tiers as the gateway (:func:`keys.auth.resolve_key`),
so a revoked key stops working here within the same bound.
:class:`KeyAuthentication` accepts the key kinds it is given: the management
API takes management keys only (standard gateway keys are refused), and
``/api/v1/generation`` takes both (:class:`AnyKeyAuthentication`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from keys.auth import resolve_key
from keys.models import ApiKey
from keys.principal import KeyPrincipal, parse_bearer
from xrouter_site.errors import AuthenticationFailed as KeyAuthenticationFailed


@dataclass(frozen=True)
class KeyUser:
    """``request.user`` for a call made with a key.

    It stands for the key's team, not a person: views read the team from
    ``request.auth`` (the :class:`~keys.principal.KeyPrincipal`).
    """

    principal: KeyPrincipal
    is_authenticated: bool = True
    is_anonymous: bool = False
    is_active: bool = True
    is_staff: bool = False
    is_superuser: bool = False
    pk: None = None

    def __str__(self) -> str:
        return f"{self.principal.kind} key {self.principal.prefix}"


class KeyAuthentication(authentication.BaseAuthentication):
    """Authenticate ``Authorization: Bearer <key>`` with a key of ``kinds``.

    Requests without a bearer header fall through to the next class
    (session); a bearer header that does not name a usable key of one of
    ``kinds`` fails with one 401 whatever the cause. DRF instantiates
    authentication classes without arguments, so a class attribute holds
    the default and ``kinds=`` overrides it per instance.
    """

    keyword = "bearer"
    kinds: tuple[str, ...] = (ApiKey.Kind.MANAGEMENT.value,)
    invalid_message: ClassVar[str] = (
        "Invalid management key. Pass a management key as 'Authorization: Bearer <key>'."
    )

    def __init__(self, kinds: tuple[str, ...] | None = None) -> None:
        if kinds is not None:
            self.kinds = kinds

    def authenticate(self, request: Request) -> tuple[KeyUser, KeyPrincipal] | None:
        credential = parse_bearer(request.META.get("HTTP_AUTHORIZATION", ""))
        if credential is None:
            return None
        for kind in self.kinds:
            try:
                principal = resolve_key(credential, kind=kind)
            except KeyAuthenticationFailed:
                continue
            return KeyUser(principal=principal), principal
        raise exceptions.AuthenticationFailed(self.invalid_message)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="xrouter"'


class ManagementKeyAuthentication(KeyAuthentication):
    """The management API's default: management keys only."""


class AnyKeyAuthentication(KeyAuthentication):
    """``/api/v1/generation``: the standard key that made a request, or a management key."""

    kinds = (ApiKey.Kind.STANDARD.value, ApiKey.Kind.MANAGEMENT.value)
    invalid_message = "Invalid API key. Pass it as 'Authorization: Bearer <key>'."


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


class AnyKeyScheme(OpenApiAuthenticationExtension):
    """Describe the key auth of ``/api/v1/generation`` in the OpenAPI schema."""

    target_class = AnyKeyAuthentication
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "The key that made the request, or a management key of its team.",
        }
