"""System checks on configuration that Django's own checks do not cover."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.security, deploy=True)
def check_secret_key(app_configs: Any, **kwargs: Any) -> list[Error]:
    from xrouter_site.settings import INSECURE_SECRET_KEY

    if settings.SECRET_KEY == INSECURE_SECRET_KEY:
        return [
            Error(
                "SECRET_KEY is the built-in development placeholder.",
                hint="Set SECRET_KEY (or SECRET_KEY_FILE) to 50+ random characters.",
                id="xrouter.E001",
            )
        ]
    return []


@register()
def check_key_ttl(app_configs: Any, **kwargs: Any) -> list[Warning]:
    if settings.XROUTER_KEY_LOCAL_TTL > 5:
        return [
            Warning(
                "XROUTER_KEY_LOCAL_TTL is over 5 seconds: revoked keys keep working that long.",
                id="xrouter.W001",
            )
        ]
    return []
