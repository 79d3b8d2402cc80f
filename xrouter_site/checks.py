"""System checks on configuration that Django's own checks do not cover."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured


def refuse_insecure_start() -> None:
    """Refuse to serve with DEBUG off and no SECRET_KEY (issue 15, Medium 10).

    The placeholder key is public (it is in this repository): sessions,
    CSRF tokens and password-reset links signed with it can be forged.
    ``check --deploy`` reports it too (xrouter.E001), but a server started
    without running the checks must not come up either. Called by the WSGI
    and ASGI entry points, so gunicorn, ``manage.py serve`` and
    ``runserver`` all stop here.
    """
    from xrouter_site.settings import INSECURE_SECRET_KEY

    if not settings.DEBUG and settings.SECRET_KEY == INSECURE_SECRET_KEY:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set and DEBUG is off: refusing to start on the public "
            "development placeholder. Set SECRET_KEY (or SECRET_KEY_FILE) to 50+ random "
            "characters, or DEBUG=true for local development."
        )


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
