"""Resolve an OAuth access token on ``/v1/`` to the principal it acts as.

``routing.gateway.auth.authenticate_bearer`` sends every credential that is not an
``xr_`` key here. A token with the ``chat`` scope maps to the hidden key of
kind ``oauth`` for (application, user) (see accounts.oauth.services), so
limits and usage work exactly as for keys.

The cache tiers mirror ``keys.auth``: an in-process dict that drops an
evicted token within ``XROUTER_KEY_LOCAL_TTL`` (1 s), then the shared cache,
then the database.
Entries are keyed by the token's SHA-256 (DOT's ``token_checksum``), never
by the token. Misses are cached too. Every change that can end a token's
right to call (revocation or expiry cleanup deleting the row, the hidden
key changing, the user leaving the team or being deactivated, the team's
limits changing) evicts the affected tokens, so a revocation is effective
everywhere within the local TTL.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from oauth2_provider.models import get_access_token_model

from accounts.models import Membership, Team, User
from accounts.oauth.services import CHAT_SCOPE, oauth_principal_digest
from accounts.roles import CONSENT_ACTIONS, consentable_scopes
from keys.models import ApiKey
from keys.principal import KeyPrincipal, PrincipalCache
from xrouter_site.errors import AuthenticationFailed
from xrouter_site.state import on_reset

logger = logging.getLogger(__name__)

AccessToken = get_access_token_model()

_MISS = "-"
_NO_SCOPE = "!scope"
# DOT's tokens are 30 characters; anything far longer is not ours.
_MAX_TOKEN_LENGTH = 512


def token_checksum(token: str) -> str:
    """Return the SHA-256 hex digest DOT stores for ``token``."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _load_from_db(checksum: str) -> KeyPrincipal | str:
    token = AccessToken.objects.select_related("user").filter(token_checksum=checksum).first()
    if token is None or token.user_id is None or token.application_id is None or token.is_expired():
        return _MISS
    if not token.user.is_active:
        return _MISS
    if CHAT_SCOPE not in token.scope.split():
        return _NO_SCOPE
    digest = oauth_principal_digest(application_id=token.application_id, user_id=token.user_id)
    key = (
        ApiKey.objects.select_related("team")
        .filter(key_hash=digest, kind=ApiKey.Kind.OAUTH)
        .first()
    )
    if key is None or not key.is_usable():
        return _MISS
    role = (
        Membership.objects.filter(user_id=token.user_id, team_id=key.team_id)
        .values_list("role", flat=True)
        .first()
    )
    if role is None or not set(token.scope.split()) & set(CONSENT_ACTIONS) <= consentable_scopes(
        role
    ):
        # Removed from the team, or demoted below what the token carries,
        # since consenting: the app loses that access too (accounts.roles).
        return _MISS
    principal = KeyPrincipal.from_key(key)
    expires = token.expires.timestamp()
    if principal.expires_at is None or expires < principal.expires_at:
        principal = dataclasses.replace(principal, expires_at=expires)
    return principal


# v2: KeyPrincipal moved to keys.principal; v3: data policy and PII mode.
# Older pickles are never read.
_tokens = PrincipalCache(what="oauth token", shared_prefix="oauthtok:v3:", load=_load_from_db)


def resolve_oauth_token(token: str) -> KeyPrincipal:
    """Return the principal of a ``chat`` access token or raise ``AuthenticationFailed``."""
    if not token or len(token) > _MAX_TOKEN_LENGTH:
        raise AuthenticationFailed("malformed")
    value = _tokens.get(token_checksum(token))
    if value == _NO_SCOPE:
        raise AuthenticationFailed("The access token does not grant the 'chat' scope.")
    if not isinstance(value, KeyPrincipal):
        raise AuthenticationFailed("unknown, revoked or expired token")
    if value.expires_at is not None and value.expires_at <= time.time():
        raise AuthenticationFailed("expired")
    return value


def forget_tokens(checksums: Iterable[str]) -> None:
    """Evict tokens from this process and from the shared cache."""
    _tokens.forget(checksums)


def _evict_now_and_on_commit(checksums: list[str]) -> None:
    forget_tokens(checksums)
    # Again after commit: a worker may have cached the old row in between.
    transaction.on_commit(lambda: forget_tokens(checksums))


def _user_checksums(user_ids: Iterable[int | None]) -> list[str]:
    ids = {uid for uid in user_ids if uid is not None}
    if not ids:
        return []
    return list(
        AccessToken.objects.filter(user_id__in=ids).values_list("token_checksum", flat=True)
    )


@receiver(post_save, sender=AccessToken)
@receiver(post_delete, sender=AccessToken)
def _evict_token(sender: Any, instance: Any, **kwargs: Any) -> None:
    _evict_now_and_on_commit([instance.token_checksum])


@receiver(post_save, sender=ApiKey)
@receiver(post_delete, sender=ApiKey)
def _evict_key_tokens(sender: type[ApiKey], instance: ApiKey, **kwargs: Any) -> None:
    if instance.kind == ApiKey.Kind.OAUTH:
        _evict_now_and_on_commit(_user_checksums([instance.created_by_id]))


@receiver(post_save, sender=Membership)
@receiver(post_delete, sender=Membership)
def _evict_member_tokens(sender: type[Membership], instance: Membership, **kwargs: Any) -> None:
    _evict_now_and_on_commit(_user_checksums([instance.user_id]))


@receiver(post_save, sender=User)
def _evict_user_tokens(sender: type[User], instance: User, **kwargs: Any) -> None:
    if not instance.is_active:
        _evict_now_and_on_commit(_user_checksums([instance.pk]))


@receiver(post_save, sender=Team)
def _evict_team_tokens(sender: type[Team], instance: Team, **kwargs: Any) -> None:
    """Team limits are copied into principals: evict the team's OAuth tokens."""
    users = ApiKey.objects.filter(team=instance, kind=ApiKey.Kind.OAUTH).values_list(
        "created_by_id", flat=True
    )
    _evict_now_and_on_commit(_user_checksums(users))


def clear_local_cache() -> None:
    """Empty this process's token cache (tests and reloads)."""
    _tokens.clear()


on_reset("accounts.oauth.tokens", clear_local_cache)
