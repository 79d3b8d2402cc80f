from __future__ import annotations

from django.apps import AppConfig


class XRouterSiteConfig(AppConfig):
    name = "xrouter_site"
    verbose_name = "XRouter"

    def ready(self) -> None:
        from xrouter_site import checks  # noqa: F401
