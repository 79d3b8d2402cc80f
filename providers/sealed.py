"""Seal provider access tokens before they go into the shared cache.

GigaChat access tokens (and Yandex IAM tokens) are bearer credentials for
the provider account. They are shared through Django's cache so that every
worker reuses one token (the OAuth host allows ~10 requests/s), but the
cache (Redis) is not a secret store: anyone who can read it, a backup or a
``MONITOR`` would get a live credential. They are therefore stored as a
Fernet token (AES-128-CBC + HMAC-SHA256) under a key derived from
``SECRET_KEY``; a value sealed under a key in ``SECRET_KEY_FALLBACKS`` still
opens, and one that does not open (rotated key, tampering) is treated as
missing, so the caller fetches a fresh token.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.utils.crypto import salted_hmac

_SALT = "xrouter.providers.sealed"


def _fernet() -> MultiFernet:
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return MultiFernet(
        [
            Fernet(
                base64.urlsafe_b64encode(
                    salted_hmac(_SALT, "", secret=s, algorithm="sha256").digest()
                )
            )
            for s in secrets
        ]
    )


def seal(data: dict[str, Any]) -> str:
    """Return ``data`` encrypted and authenticated, as text for the cache."""
    return _fernet().encrypt(orjson.dumps(data)).decode("ascii")


def unseal(value: Any) -> dict[str, Any] | None:
    """Return what :func:`seal` sealed, or None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        data = orjson.loads(_fernet().decrypt(value.encode("ascii")))
    except (InvalidToken, ValueError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
