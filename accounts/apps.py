from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"

    def ready(self) -> None:
        """Connect the OAuth token-cache eviction receivers in every process.

        They live with the resolver in accounts.oauth.tokens. Importing it
        here, not only from the URLconf, means a shell, a management
        command or a Celery worker that revokes a token, deletes a user's
        membership or changes a team also evicts the cached principals.
        """
        # Revoke what a member's role no longer allows on every membership
        # change, whatever made it (accounts.credentials).
        from accounts import (
            credentials,  # noqa: F401
            sso_rules,  # noqa: F401  (registers the SSO settings checks)
        )
        from accounts.oauth import tokens as oauth_tokens  # noqa: F401
