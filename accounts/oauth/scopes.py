"""Which OAuth scopes each kind of application may ask for.

Users consent to ``chat``, ``keys:*`` and ``usage:read`` for third-party
apps (authorization code + PKCE). ``introspection`` belongs to resource
servers only: applications registered for the client-credentials grant in
the Django admin, never offered on a consent page.
"""

from __future__ import annotations

from typing import Any

from oauth2_provider.models import AbstractApplication
from oauth2_provider.scopes import SettingsScopes

INTROSPECTION = "introspection"


class XRouterScopes(SettingsScopes):
    """Split the scopes between user-facing apps and resource servers."""

    def get_available_scopes(
        self,
        application: AbstractApplication | None = None,
        request: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> list[str]:
        """Return the scopes ``application`` may request (all when None)."""
        scopes = list(super().get_available_scopes(application, request, *args, **kwargs))
        if application is None:
            # Discovery (RFC 8414 scopes_supported) lists everything.
            return scopes
        if application.authorization_grant_type == AbstractApplication.GRANT_CLIENT_CREDENTIALS:
            return [INTROSPECTION]
        return [scope for scope in scopes if scope != INTROSPECTION]

    def get_default_scopes(
        self,
        application: AbstractApplication | None = None,
        request: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> list[str]:
        """Return the scopes granted when a request names none."""
        if (
            application is not None
            and application.authorization_grant_type == AbstractApplication.GRANT_CLIENT_CREDENTIALS
        ):
            return [INTROSPECTION]
        return list(super().get_default_scopes(application, request, *args, **kwargs))


def scope_labels() -> dict[str, str]:
    """Return translated consent-page descriptions of the scopes."""
    from django.utils.translation import gettext

    return {
        "chat": gettext("Call the models (/v1/) on behalf of your current team, within its limits"),
        "keys:read": gettext("Read your team's API keys"),
        "keys:write": gettext("Create, change and revoke your team's API keys"),
        "usage:read": gettext("Read your team's usage"),
        INTROSPECTION: gettext("Introspect tokens"),
    }
