"""Who is calling: :class:`KeyPrincipal`, and the cache that resolves it.

A principal is the picklable snapshot of an API key (and its team's limits)
that the hot path works from. :class:`PrincipalCache` holds the three lookup
tiers shared by API keys (``keys.auth``) and OAuth access tokens
(``accounts.oauth.tokens``); :func:`parse_bearer` is the one reader of
``Authorization: Bearer ...`` headers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache

from keys.models import ApiKey

logger = logging.getLogger(__name__)

_LOCAL_MAX_ENTRIES = 10_000
# How long a request waits for another one's load of the same key before
# loading it itself (the shared cache or the database hanging).
_LOAD_WAIT_SECONDS = 5.0


def parse_bearer(header: str) -> str | None:
    """Return the credential of an ``Authorization: Bearer <credential>`` value.

    None when the scheme is not ``Bearer`` (in any case); otherwise the
    credential with surrounding whitespace stripped, which may be empty:
    callers refuse an empty credential rather than fall through.
    """
    scheme, _sep, credential = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credential.strip()


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
    # Limits (routing.limits.plan): the key's own, its per-model overrides, the
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
    # Data handling: the team's residency policy (routing/residency.py) and
    # the PII guardrail mode in force for this key (its own, else the team's).
    data_policy: str = "any"
    pii_mode: str = "off"

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
            data_policy=team.data_policy,
            pii_mode=stricter_pii_mode(team.pii_mode, key.pii_mode),
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


_PII_STRICTNESS = ("off", "redact", "block")


def stricter_pii_mode(team_mode: str, key_mode: str) -> str:
    """Return the PII mode in force: a key may be stricter than its team, never looser."""
    modes = [m for m in (team_mode, key_mode) if m in _PII_STRICTNESS]
    return max(modes, key=_PII_STRICTNESS.index, default="off")


class PrincipalCache:
    """Resolve credentials to principals through the three tiers above.

    ``load`` reads the database for a digest and returns a principal or a
    miss marker (any string); misses are cached like hits. Both API keys
    and OAuth access tokens (``accounts.oauth.tokens``) use one of these.
    """

    def __init__(
        self, *, what: str, shared_prefix: str, load: Callable[[str], KeyPrincipal | str]
    ) -> None:
        self.what = what
        self.shared_prefix = shared_prefix
        self.load_from_db = load
        # digest -> (monotonic deadline, principal or miss marker)
        self.local: dict[str, tuple[float, KeyPrincipal | str]] = {}
        # digest -> set when the one load in flight for it is done.
        self.loading: dict[str, threading.Event] = {}

    def get(self, digest: str) -> KeyPrincipal | str:
        """Return the principal (or miss marker) for ``digest``.

        One load per digest at a time: when the local entry expires under
        load, every request of that key would otherwise miss at once and
        each open its own shared-cache connection (issue 19: a tenth of a
        worker's CPU while 1,000 streams opened). The others wait for that
        load and take its result, which is as fresh as their own would be.
        """
        now = time.monotonic()
        entry = self.local.get(digest)
        if entry is not None and entry[0] > now:
            return entry[1]
        pending = self.loading.get(digest)
        if pending is not None:
            pending.wait(_LOAD_WAIT_SECONDS)
            entry = self.local.get(digest)
            if entry is not None and entry[0] > time.monotonic():
                return entry[1]
        done = self.loading[digest] = threading.Event()
        try:
            value = self._load(digest)
            if len(self.local) >= _LOCAL_MAX_ENTRIES:
                # Oldest first: dicts keep insertion order.
                self.local.pop(next(iter(self.local)))
            self.local[digest] = (time.monotonic() + settings.XROUTER_KEY_LOCAL_TTL, value)
        finally:
            if self.loading.get(digest) is done:
                del self.loading[digest]
            done.set()
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
        self.loading.clear()
