from __future__ import annotations

from django.apps import AppConfig


class KeysConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "keys"
    verbose_name = "API keys"

    def ready(self) -> None:
        # Connects the cache-eviction receivers.
        from keys import auth  # noqa: F401
