"""Who is calling ``/v1/``: an ``xr_`` API key or an OAuth access token.

Both resolve to a :class:`keys.principal.KeyPrincipal` through their
cache tiers (:mod:`keys.auth`, :mod:`accounts.oauth.tokens`), so limits and
usage work the same for either; every failure is one 401 body.
"""

from __future__ import annotations

from django.http import HttpRequest

from accounts.oauth.tokens import resolve_oauth_token
from keys import activity
from keys.auth import resolve_key
from keys.principal import KeyPrincipal, parse_bearer
from routing.gateway.context import CallContext
from xrouter_site.errors import AuthenticationFailed


def authenticate_bearer(header: str) -> KeyPrincipal:
    """Resolve an ``Authorization`` header value: an ``xr_`` key or an OAuth token."""
    credential = parse_bearer(header)
    if not credential:
        raise AuthenticationFailed("missing")
    if credential.startswith("xr_"):
        return resolve_key(credential)
    return resolve_oauth_token(credential)


def authenticate(request: HttpRequest, ctx: CallContext, header: str | None = None) -> KeyPrincipal:
    """Resolve the caller from ``Authorization`` (or a surface's own ``header``)."""
    if header is None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
    principal = authenticate_bearer(header)
    ctx.principal = principal
    activity.touch(principal.key_id)
    return principal
