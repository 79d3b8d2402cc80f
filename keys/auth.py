"""Resolve a bearer key to the principal behind it, without the database.

The lookup has three tiers:

1. an in-process dict; with a shared cache an entry lives up to
   ``XROUTER_KEY_LOCAL_MAX_AGE`` and is dropped within
   ``XROUTER_KEY_LOCAL_TTL`` (1 s) of an announced eviction
   (``keys.principal``), otherwise it lives the local TTL;
2. the shared cache (Redis), holding principals and misses, evicted and
   announced when a key changes (``post_save``), so every worker sees a
   revocation within the local TTL;
3. the database, on a shared-cache miss.

Without a shared cache (zero-config, local-memory cache per process) the
second tier is skipped: after the local TTL a worker asks the database
again, so the one-second revocation bound holds across processes there too.
Misses are cached like hits because broken clients retry the same bad key.

Both APIs share these tiers: :func:`resolve_key` (``/v1/``) accepts only
standard keys and :func:`resolve_management_key` (``/api/v1/``) only
management keys, so each kind is useless on the other API.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from accounts.models import Team
from keys import tokens
from keys.models import ApiKey
from keys.principal import KeyPrincipal, PrincipalCache
from xrouter_site.errors import AuthenticationFailed
from xrouter_site.state import on_reset

logger = logging.getLogger(__name__)

_MISS = "-"  # cached in place of a principal for unknown or unusable keys


def _load_from_db(digest: str) -> KeyPrincipal | str:
    key = ApiKey.objects.select_related("team").filter(key_hash=digest).first()
    if key is None:
        return _MISS
    if not key.is_usable():
        logger.info(
            "api key refused",
            extra={"key_id": key.pk, "reason": "revoked" if key.is_revoked else "disabled/expired"},
        )
        return _MISS
    return KeyPrincipal.from_key(key)


_keys = PrincipalCache(
    what="api key",
    # The version changes whenever principals gain fields or move (v2:
    # ``kind``, v3: limits, v4: keys.auth -> keys.principal, v5: data policy
    # and PII mode), so entries pickled by other code are never unpickled
    # during a rolling deploy.
    shared_prefix="apikey:v5:",
    load=_load_from_db,
)


def resolve_key(plaintext: str, *, kind: str = ApiKey.Kind.STANDARD.value) -> KeyPrincipal:
    """Return the principal for ``plaintext`` or raise ``AuthenticationFailed``.

    Only keys of ``kind`` are accepted; the default is what ``/v1/`` takes.
    """
    if not tokens.is_well_formed(plaintext):
        raise AuthenticationFailed("malformed")
    value = _keys.get(tokens.digest(plaintext))
    if not isinstance(value, KeyPrincipal):
        raise AuthenticationFailed("unknown, revoked or disabled")
    if value.expires_at is not None and value.expires_at <= time.time():
        raise AuthenticationFailed("expired")
    if value.kind != kind:
        raise AuthenticationFailed("wrong key kind")
    return value


def resolve_management_key(plaintext: str) -> KeyPrincipal:
    """Return the principal of a management key or raise ``AuthenticationFailed``."""
    return resolve_key(plaintext, kind=ApiKey.Kind.MANAGEMENT.value)


def forget_key(digest: str) -> None:
    """Evict a key from this process and from the shared cache."""
    _keys.forget([digest])


@receiver(post_save, sender=Team)
def _evict_team_keys(sender: type[Team], instance: Team, **kwargs: Any) -> None:
    """Team limits live in each key's principal: evict all the team's keys."""
    digests = list(ApiKey.objects.filter(team=instance).values_list("key_hash", flat=True))

    def evict() -> None:
        # One eviction (one announcement) for the whole team.
        _keys.forget(digests)

    evict()
    transaction.on_commit(evict)


@receiver(post_save, sender=ApiKey)
@receiver(post_delete, sender=ApiKey)
def _evict_on_change(sender: type[ApiKey], instance: ApiKey, **kwargs: Any) -> None:
    digest = instance.key_hash
    forget_key(digest)
    # Evict again once the change is committed: a worker that read the old
    # row between the first eviction and the commit may have cached it.
    transaction.on_commit(lambda: forget_key(digest))


def clear_local_cache() -> None:
    """Empty this process's key cache (tests and reloads)."""
    _keys.clear()


on_reset("keys.auth", clear_local_cache)
