"""Resolve a bearer key to the principal behind it, without the database.

The lookup has three tiers:

1. an in-process dict, trusted for ``XROUTER_KEY_LOCAL_TTL`` seconds (1 s);
2. the shared cache (Redis), holding principals and misses, evicted when a
   key changes (``post_save``), so every worker sees a revocation within the
   local TTL;
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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from accounts.models import Team
from keys import tokens
from keys.models import ApiKey
from xrouter_site.errors import AuthenticationFailed

logger = logging.getLogger(__name__)

_MISS = "-"  # cached in place of a principal for unknown or unusable keys
_LOCAL_MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class KeyPrincipal:
    """What the hot path needs to know about the caller; picklable."""

    key_id: int
    public_id: str
    team_id: int
    team_slug: str
    prefix: str
    name: str
    allowed_models: frozenset[str]
    rpm_limit: int | None
    tpm_limit: int | None
    budget_rub: Decimal | None
    expires_at: float | None  # POSIX timestamp
    kind: str = ApiKey.Kind.STANDARD.value
    # Limits (routing.budgets): the key's own, its per-model overrides, the
    # team's defaults for keys and the team's aggregate caps.
    concurrency_limit: int | None = None
    budget_period: str = "never"
    model_limits: dict[str, dict[str, int]] = field(default_factory=dict)
    team_default_key_rpm: int | None = None
    team_default_key_tpm: int | None = None
    team_default_key_concurrency: int | None = None
    team_rpm_limit: int | None = None
    team_tpm_limit: int | None = None
    team_concurrency_limit: int | None = None
    team_budget_rub: Decimal | None = None
    team_budget_period: str = "never"

    @classmethod
    def from_key(cls, key: ApiKey) -> KeyPrincipal:
        team = key.team
        return cls(
            key_id=key.pk,
            public_id=str(key.public_id),
            team_id=key.team_id,
            team_slug=key.team.slug,
            prefix=key.prefix,
            name=key.name,
            allowed_models=frozenset(key.allowed_models),
            rpm_limit=key.rpm_limit,
            tpm_limit=key.tpm_limit,
            budget_rub=key.budget_rub,
            expires_at=key.expires_at.timestamp() if key.expires_at else None,
            kind=str(key.kind),
            concurrency_limit=key.concurrency_limit,
            budget_period=key.budget_period,
            model_limits=dict(key.model_limits or {}),
            team_default_key_rpm=team.default_key_rpm,
            team_default_key_tpm=team.default_key_tpm,
            team_default_key_concurrency=team.default_key_concurrency,
            team_rpm_limit=team.rpm_limit,
            team_tpm_limit=team.tpm_limit,
            team_concurrency_limit=team.concurrency_limit,
            team_budget_rub=team.budget_rub,
            team_budget_period=team.budget_period,
        )

    def allows_model(self, model_id: str) -> bool:
        """Return True if this key may call ``model_id``.

        An allowed entry without a ``:version`` suffix allows every version.
        """
        if not self.allowed_models:
            return True
        if model_id in self.allowed_models:
            return True
        base, sep, _version = model_id.partition(":")
        return bool(sep) and base in self.allowed_models


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


class PrincipalCache:
    """Resolve credentials to principals through the three tiers above.

    ``load`` reads the database for a digest and returns a principal or a
    miss marker (any string); misses are cached like hits. Both API keys
    and OAuth access tokens (``accounts.oauth_tokens``) use one of these.
    """

    def __init__(
        self, *, what: str, shared_prefix: str, load: Callable[[str], KeyPrincipal | str]
    ) -> None:
        self.what = what
        self.shared_prefix = shared_prefix
        self.load_from_db = load
        # digest -> (monotonic deadline, principal or miss marker)
        self.local: dict[str, tuple[float, KeyPrincipal | str]] = {}

    def get(self, digest: str) -> KeyPrincipal | str:
        """Return the principal (or miss marker) for ``digest``."""
        now = time.monotonic()
        entry = self.local.get(digest)
        if entry is not None and entry[0] > now:
            return entry[1]
        value = self._load(digest)
        if len(self.local) >= _LOCAL_MAX_ENTRIES:
            # Oldest first: dicts keep insertion order.
            self.local.pop(next(iter(self.local)))
        self.local[digest] = (now + settings.XROUTER_KEY_LOCAL_TTL, value)
        return value

    def _load(self, digest: str) -> KeyPrincipal | str:
        if not settings.XROUTER_SHARED_CACHE:
            return self.load_from_db(digest)
        shared_key = self.shared_prefix + digest
        try:
            value = cache.get(shared_key)
        except Exception:  # Redis down: the database is still the truth.
            logger.warning("shared cache unavailable for %s lookup", self.what, exc_info=True)
            return self.load_from_db(digest)
        if value is None:
            value = self.load_from_db(digest)
            try:
                cache.set(shared_key, value, settings.XROUTER_KEY_SHARED_TTL)
            except Exception:
                logger.warning("shared cache unavailable for %s store", self.what, exc_info=True)
        return value

    def forget(self, digests: Iterable[str]) -> None:
        """Evict ``digests`` from this process and from the shared cache."""
        digests = [d for d in digests if d]
        for digest in digests:
            self.local.pop(digest, None)
        if not digests:
            return
        try:
            cache.delete_many([self.shared_prefix + d for d in digests])
        except Exception:
            # The local TTL still bounds staleness; shared entries expire too.
            logger.error("could not evict %s from the shared cache", self.what, exc_info=True)

    def clear(self) -> None:
        """Empty this process's tier (tests and reloads)."""
        self.local.clear()


_keys = PrincipalCache(
    what="api key",
    # The version changes whenever principals gain fields (v2: ``kind``,
    # v3: limits), so entries pickled by older code are never read as
    # principals during a rolling deploy.
    shared_prefix="apikey:v3:",
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


def authenticate_bearer(header: str) -> KeyPrincipal:
    """Parse an ``Authorization`` header value and resolve its key."""
    scheme, _sep, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise AuthenticationFailed("missing")
    credential = credential.strip()
    if not credential.startswith("xr_"):
        # Not a key: an OAuth access token. Imported here so keys does not
        # depend on the OAuth code at import time (it imports keys.auth).
        from accounts.oauth_tokens import resolve_oauth_token

        return resolve_oauth_token(credential)
    return resolve_key(credential)


def forget_key(digest: str) -> None:
    """Evict a key from this process and from the shared cache."""
    _keys.forget([digest])


@receiver(post_save, sender=Team)
def _evict_team_keys(sender: type[Team], instance: Team, **kwargs: Any) -> None:
    """Team limits live in each key's principal: evict all the team's keys."""
    digests = list(ApiKey.objects.filter(team=instance).values_list("key_hash", flat=True))

    def evict() -> None:
        for digest in digests:
            forget_key(digest)

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
