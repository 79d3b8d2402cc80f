"""Who is calling: :class:`KeyPrincipal`, and the cache that resolves it.

A principal is the picklable snapshot of an API key (and its team's limits)
that the hot path works from. :class:`PrincipalCache` holds the three lookup
tiers shared by API keys (``keys.auth``) and OAuth access tokens
(``accounts.oauth.tokens``); :func:`parse_bearer` is the one reader of
``Authorization: Bearer ...`` headers.

Revocations are announced, not waited out (issue 19). With a shared cache,
every eviction (:meth:`PrincipalCache.forget`) also bumps a counter in it
and stores the evicted digests under the new count. A worker reads that one
counter at most once per ``XROUTER_KEY_LOCAL_TTL`` (1 s) and drops what was
announced since its last read, so it may keep an unchanged key for
``XROUTER_KEY_LOCAL_MAX_AGE`` while a revoked one still stops working within
the local TTL. Before, every entry expired after the local TTL: with traffic
over 10,000 keys nearly every request missed locally and paid a shared-cache
GET and an unpickle (0.65x the single-key req/s in the bench).
Whenever the worker cannot tell what was announced (counter unreadable,
gone after a Redis restart, announcements expired or missing), it empties
its tier, which is the old behaviour.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache

from keys.models import ApiKey

logger = logging.getLogger(__name__)

# About 1.2 KB an entry: 20,000 keys is ~24 MB per worker at most. Above
# the bench's 10,000 traffic keys, because oldest-first eviction of a cyclic
# key stream one entry too small misses on every request.
_LOCAL_MAX_ENTRIES = 20_000
# Announcements are kept this long; a worker that has not read the counter
# for longer (idle) finds them gone and empties its tier instead.
_ANNOUNCE_TTL_SECONDS = 600
# More announcements than this since the last read: empty the tier rather
# than fetch them all.
_ANNOUNCE_MAX_GAP = 500
# An announcement with more digests than this says "everything".
_ANNOUNCE_MAX_DIGESTS = 5_000
_ALL = "*"
# How long a request waits for another one's load of the same key before
# loading it itself (the shared cache or the database hanging).
_LOAD_WAIT_SECONDS = 5.0


def _new_series() -> int:
    """Return the first count of a new announcement series.

    Random and far apart, so a worker that read the counter before Redis
    lost it sees a jump (or a fall) and empties its tier, never a
    plausible next count of announcements it did not read.
    """
    return secrets.randbelow(2**40) * 1_000_000


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
        # Digests are hex, so this never names a principal's entry.
        self.epoch_key = shared_prefix + "epoch"
        # digest -> (monotonic deadline, principal or miss marker)
        self.local: dict[str, tuple[float, KeyPrincipal | str]] = {}
        # digest -> set when the one load in flight for it is done.
        self.loading: dict[str, threading.Event] = {}
        # The announcement count this tier is up to date with; None: unknown,
        # so entries live only the local TTL.
        self.epoch: int | None = None
        self._next_check = 0.0
        self._checking: threading.Event | None = None

    def get(self, digest: str) -> KeyPrincipal | str:
        """Return the principal (or miss marker) for ``digest``.

        One load per digest at a time: when the local entry expires under
        load, every request of that key would otherwise miss at once and
        each open its own shared-cache connection (issue 19: a tenth of a
        worker's CPU while 1,000 streams opened). The others wait for that
        load and take its result, which is as fresh as their own would be.
        """
        now = time.monotonic()
        if now >= self._next_check:
            self._check_announcements()
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
            epoch = self.epoch
            value = self._load(digest)
            if len(self.local) >= _LOCAL_MAX_ENTRIES:
                # Oldest first: dicts keep insertion order.
                self.local.pop(next(iter(self.local)))
            # Kept past the local TTL only if no announcement was read while
            # loading: one read then may have named this digest before the
            # value landed here.
            life = settings.XROUTER_KEY_LOCAL_TTL
            if epoch is not None and epoch == self.epoch:
                life = max(life, settings.XROUTER_KEY_LOCAL_MAX_AGE)
            self.local[digest] = (time.monotonic() + life, value)
        finally:
            if self.loading.get(digest) is done:
                del self.loading[digest]
            done.set()
        return value

    def _check_announcements(self) -> None:
        """Read the announcement counter and drop what was evicted since the last read.

        One read at a time; requests arriving meanwhile wait for it, so no
        entry is used unchecked for longer than the local TTL plus one
        shared-cache round trip.
        """
        checking = self._checking
        if checking is not None:
            checking.wait(_LOAD_WAIT_SECONDS)
            return
        done = self._checking = threading.Event()
        try:
            self._next_check = time.monotonic() + settings.XROUTER_KEY_LOCAL_TTL
            if settings.XROUTER_SHARED_CACHE:
                self._apply_announcements()
        finally:
            self._checking = None
            done.set()

    def _apply_announcements(self) -> None:
        try:
            current = cache.get(self.epoch_key)
            seen = self.epoch
            if current is None:
                # Never announced, or Redis lost it: nothing says what changed
                # until now. A new series starts far from any old count.
                cache.add(self.epoch_key, _new_series(), None)
                current = cache.get(self.epoch_key)
                self._distrust()
                if current is not None:
                    self.epoch = int(current)
                return
            current = int(current)
            if seen is None or current < seen or current - seen > _ANNOUNCE_MAX_GAP:
                self._distrust()
                self.epoch = current
                return
            if current == seen:
                return
            names = [f"{self.epoch_key}:{n}" for n in range(seen + 1, current + 1)]
            announced = cache.get_many(names)
        except Exception:
            logger.warning(
                "shared cache unavailable for %s announcements", self.what, exc_info=True
            )
            self._distrust()
            return
        if len(announced) < len(names) or any(v == _ALL for v in announced.values()):
            self._distrust()
        else:
            for digests in announced.values():
                for digest in digests:
                    self.local.pop(digest, None)
        self.epoch = current

    def _distrust(self) -> None:
        """Empty this tier and trust new entries only the local TTL until a good read."""
        self.local.clear()
        self.epoch = None

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
        """Evict ``digests`` from this process and the shared cache, and announce it."""
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
        if settings.XROUTER_SHARED_CACHE:
            self._announce(digests)

    def _announce(self, digests: list[str]) -> None:
        """Tell every worker to drop ``digests``: bump the counter, then name them.

        A worker that reads the new count before the names are stored finds
        them missing and empties its tier, which is safe.
        """
        try:
            try:
                epoch = int(cache.incr(self.epoch_key))
            except ValueError:  # no counter yet (or Redis lost it)
                epoch = _new_series() + 1
                if not cache.add(self.epoch_key, epoch, None):
                    epoch = int(cache.incr(self.epoch_key))
            payload: list[str] | str = digests if len(digests) <= _ANNOUNCE_MAX_DIGESTS else _ALL
            cache.set(f"{self.epoch_key}:{epoch}", payload, _ANNOUNCE_TTL_SECONDS)
        except Exception:
            # Workers then keep an unchanged-looking copy up to the max age.
            logger.error("could not announce the %s eviction", self.what, exc_info=True)

    def clear(self) -> None:
        """Empty this process's tier (tests and reloads)."""
        self.local.clear()
        self.loading.clear()
        self.epoch = None
        self._next_check = 0.0
