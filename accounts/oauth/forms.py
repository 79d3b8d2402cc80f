"""Input validation for OAuth app registration and the key exchange.

Redirect URIs are checked here rather than by DOT's ``Application.clean()``
because that accepts only ``ALLOWED_REDIRECT_URI_SCHEMES`` (https outside
DEBUG), while RFC 8252 7.3 needs plain http on loopback IP literals for
native apps. Everything else is refused up front: fragments, userinfo,
wildcards, missing hosts. Matching at request time is DOT's exact match.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from oauth2_provider.models import AbstractApplication

LOOPBACK_HOSTS = ("127.0.0.1", "::1")
MAX_REDIRECT_URIS = 10


def is_loopback_http(uri: str) -> bool:
    """Return True for ``http://127.0.0.1[:port]/...`` or ``http://[::1]...``."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return False
    return parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS


def validate_redirect_uri(uri: str, *, debug_http: bool = True) -> str:
    """Return ``uri`` if it may be registered or used as a callback; else raise.

    With ``debug_http`` (registration), DEBUG also lets plain http through
    for local development. The ``/auth`` key exchange passes False: its
    callback is registered nowhere, so it is https or loopback http only.
    """
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValidationError(gettext("%(uri)s is not a valid URL.") % {"uri": uri}) from None
    if any(ch.isspace() for ch in uri) or not parts.hostname:
        raise ValidationError(gettext("%(uri)s is not a valid URL.") % {"uri": uri})
    if "#" in uri:
        raise ValidationError(gettext("A redirect URI cannot have a fragment."))
    if "@" in parts.netloc:
        raise ValidationError(gettext("A redirect URI cannot contain credentials."))
    if "*" in parts.netloc:
        raise ValidationError(gettext("A redirect URI cannot contain wildcards."))
    if parts.scheme == "https":
        return uri
    if parts.scheme == "http" and (
        (debug_http and settings.DEBUG) or parts.hostname in LOOPBACK_HOSTS
    ):
        return uri
    raise ValidationError(
        gettext("Use https, or http on 127.0.0.1 or [::1] for a native app: %(uri)s") % {"uri": uri}
    )


class ApplicationRegisterForm(forms.Form):
    """Register a third-party app (authorization code + PKCE)."""

    name = forms.CharField(label=_("Name"), max_length=100)
    redirect_uris = forms.CharField(
        label=_("Redirect URIs"),
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("One per line. Matched exactly, character for character."),
    )
    client_type = forms.ChoiceField(
        label=_("Client type"),
        choices=[
            (AbstractApplication.CLIENT_PUBLIC, _("Public (browser or native app, no secret)")),
            (AbstractApplication.CLIENT_CONFIDENTIAL, _("Confidential (server, with a secret)")),
        ],
        initial=AbstractApplication.CLIENT_PUBLIC,
    )

    def clean_redirect_uris(self) -> list[str]:
        """Return the validated URIs as a list."""
        uris = self.cleaned_data["redirect_uris"].split()
        if not uris:
            raise ValidationError(gettext("Enter at least one redirect URI."))
        if len(uris) > MAX_REDIRECT_URIS:
            raise ValidationError(
                gettext("Enter at most %(n)d redirect URIs.") % {"n": MAX_REDIRECT_URIS}
            )
        errors = []
        for uri in uris:
            try:
                validate_redirect_uri(uri)
            except ValidationError as exc:
                errors.extend(exc.error_list)
        if errors:
            raise ValidationError(errors)
        return list(dict.fromkeys(uris))
