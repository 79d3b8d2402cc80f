from __future__ import annotations

from django.apps import AppConfig


class RoutingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "routing"
    verbose_name = "Routing and model catalog"

    def ready(self) -> None:
        # Connects the catalog-version receivers.
        from routing import table  # noqa: F401
