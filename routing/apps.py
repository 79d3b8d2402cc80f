from __future__ import annotations

from django.apps import AppConfig


class RoutingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "routing"
    verbose_name = "Routing and model catalog"

    def ready(self) -> None:
        # Connects the catalog-version receivers.
        from keys.panels import key_panel_register
        from routing import table  # noqa: F401
        from routing.keypage import key_usage_panel

        # A key's page shows its usage and limit state (keys cannot import us).
        key_panel_register(key_usage_panel)
