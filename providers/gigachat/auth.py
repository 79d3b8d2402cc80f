"""GigaChat OAuth: one access token per account, shared by every worker.

GigaChat's API takes a 30-minute bearer token that the OAuth host issues
for the long-lived *authorization key* and a scope. The OAuth host allows
about 10 token requests per second per account, so a fleet of gunicorn
workers that each fetched their own token after a deploy (or after every
expiry) would trip that limit. :class:`TokenManager` therefore keeps the
token in Django's cache (Redis in production) and makes sure only one
process fetches a new one at a time:

* within a worker, a lock: one greenlet/thread fetches, the others wait and
  reuse its token;
* across workers, a cache lock taken with ``cache.add`` (atomic ``SET NX``
  on Redis) with a short TTL: the holder calls the OAuth host and stores the
  token; the others poll the cache until it appears (or the lock lapses and
  one of them takes over).

A worker also keeps the token in memory, so a warm request costs no cache
round trip. Tokens are refreshed ``refresh_margin_s`` (default 60 s, as the
official SDK does) before ``expires_at``; a 401 from the API drops the
rejected token everywhere via :meth:`TokenManager.invalidate` and the caller
asks for a new one once.

Without a shared cache (the zero-config run uses locmem) the same code
degrades to one token per process, which is still correct.

Usage::

    tokens = TokenManager(provider="gigachat", http=http_client,
                          auth_url=..., credential=key, scope="GIGACHAT_API_PERS")
    token = tokens.get()
    ...  # on HTTP 401 with ``token``:
    tokens.invalidate(token)
    token = tokens.get(rejected=token)
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from django.core.cache import cache

from providers.errors import (
    ProviderError,
    bad_response,
    error_from_status,
    retry_after_seconds,
    sanitize_upstream_message,
)
from providers.http import HttpClient
from xrouter_site.errors import ErrorCode

logger = logging.getLogger(__name__)

#: A 10-digit ``expires_at`` is a Unix time in seconds, a 13-digit one in
#: milliseconds; nothing below this bound can be a millisecond timestamp of
#: this century (it is 1973-03-03 in ms, year 5138 in seconds).
_MS_THRESHOLD = 100_000_000_000
#: How long a rejected authorization key is remembered, so a broken key does
#: not turn every client request into an OAuth call (and a 429 from the
#: OAuth host's rate limit).
_FAILURE_TTL_S = 10


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A bearer token and when to stop using it (both in epoch seconds)."""

    value: str
    expires_at: float
    refresh_at: float

    def usable(self, now: float) -> bool:
        """Return True if the token may still be sent at ``now``."""
        return now < self.refresh_at

    def as_cache(self) -> dict[str, Any]:
        return {"value": self.value, "expires_at": self.expires_at, "refresh_at": self.refresh_at}

    @classmethod
    def from_cache(cls, data: Any) -> AccessToken | None:
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                value=str(data["value"]),
                expires_at=float(data["expires_at"]),
                refresh_at=float(data["refresh_at"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


def expires_at_seconds(value: Any) -> float:
    """Return an OAuth ``expires_at``/``exp`` value as epoch seconds.

    GigaChat sends milliseconds (13 digits); one docs example and the
    password flow show seconds (10 digits). Reading by magnitude handles
    both, where trusting the unit blindly would make a seconds value look
    long expired (the SDK's re-auth-on-every-call trap).
    """
    number = float(value)
    return number / 1000.0 if number >= _MS_THRESHOLD else number


class TokenManager:
    """Fetch, cache and share one GigaChat access token (see module docs)."""

    def __init__(
        self,
        *,
        provider: str,
        http: HttpClient,
        auth_url: str,
        credential: str,
        scope: str,
        refresh_margin_s: float = 60.0,
        auth_timeout_s: float = 10.0,
        lock_ttl_s: float = 15.0,
        poll_interval_s: float = 0.05,
    ) -> None:
        self.provider = provider
        self.http = http
        self.auth_url = auth_url
        self.scope = scope
        self._credential = credential
        self.refresh_margin_s = refresh_margin_s
        self.auth_timeout_s = auth_timeout_s
        # The lock must outlive one OAuth call (connect + read timeout) or a
        # slow holder would see a second worker start a parallel fetch.
        self.lock_ttl_s = max(lock_ttl_s, auth_timeout_s + 5.0)
        self.poll_interval_s = poll_interval_s
        # The key names the account, never the secret: a digest of where and
        # how the token is obtained. Two catalog providers with the same key
        # and scope share one token, as they share one account.
        digest = hashlib.sha256(f"{auth_url}\n{scope}\n{credential}".encode()).hexdigest()[:32]
        self.cache_key = f"gigachat:token:{digest}"
        self.lock_key = f"{self.cache_key}:lock"
        self.failure_key = f"{self.cache_key}:failure"
        self._local: AccessToken | None = None
        self._lock = threading.Lock()

    # ---- public API --------------------------------------------------------

    def get(self, *, rejected: str | None = None) -> str:
        """Return a usable access token, fetching one if nobody has.

        ``rejected`` is a token the API just refused with 401: it is never
        returned again, even if the cache still holds it.
        Raises :class:`ProviderError` if the OAuth host refuses or fails.
        """
        token = self._local
        if token is not None and token.value != rejected and token.usable(time.time()):
            return token.value
        with self._lock:
            token = self._local
            if token is not None and token.value != rejected and token.usable(time.time()):
                return token.value
            token = self._obtain(rejected)
            self._local = token if token.usable(time.time()) else None
            return token.value

    def invalidate(self, token: str) -> None:
        """Forget ``token`` here and in the shared cache (it got a 401)."""
        with self._lock:
            if self._local is not None and self._local.value == token:
                self._local = None
        shared = AccessToken.from_cache(self._cache("get", self.cache_key))
        # Only delete what was rejected: another worker may already have
        # stored a fresh token under the same key.
        if shared is not None and shared.value == token:
            self._cache("delete", self.cache_key)

    # ---- single flight -------------------------------------------------------

    def _obtain(self, rejected: str | None) -> AccessToken:
        """Return the shared token or fetch one, one fetcher at a time."""
        deadline = time.monotonic() + self.lock_ttl_s + self.auth_timeout_s
        while True:
            shared = self._shared(rejected)
            if shared is not None:
                return shared
            self._raise_recent_failure()
            owner = uuid.uuid4().hex
            acquired = self._cache("add", self.lock_key, owner, self.lock_ttl_s)
            if acquired is None:
                # The cache is down: fetch alone rather than fail the request.
                return self._fetch()
            if acquired:
                try:
                    # The previous holder may have stored a token between the
                    # read above and taking the lock.
                    shared = self._shared(rejected)
                    if shared is not None:
                        return shared
                    token = self._fetch()
                    if token.usable(time.time()):
                        timeout = max(1, int(token.refresh_at - time.time()))
                        self._cache("set", self.cache_key, token.as_cache(), timeout)
                    return token
                finally:
                    self._release(owner)
            if time.monotonic() >= deadline:
                raise ProviderError(
                    f"timed out waiting for a {self.provider} access token",
                    provider=self.provider,
                    retryable=True,
                    status=503,
                    code=ErrorCode.UPSTREAM_AUTH_PENDING,
                )
            time.sleep(self.poll_interval_s)

    def _shared(self, rejected: str | None) -> AccessToken | None:
        token = AccessToken.from_cache(self._cache("get", self.cache_key))
        if token is None or token.value == rejected or not token.usable(time.time()):
            return None
        return token

    def _release(self, owner: str) -> None:
        # Get-then-delete is not atomic; the lock can only be lost in between
        # if the OAuth call outlived lock_ttl_s, and then two fetches happen
        # once, which the OAuth rate limit easily absorbs.
        if self._cache("get", self.lock_key) == owner:
            self._cache("delete", self.lock_key)

    def _raise_recent_failure(self) -> None:
        failure = self._cache("get", self.failure_key)
        if isinstance(failure, dict):
            raise self._auth_rejected(failure.get("upstream_status"))

    def _cache(self, op: str, *args: Any) -> Any:
        """Run a cache operation; None (after a warning) if the cache is down."""
        try:
            return getattr(cache, op)(*args)
        except Exception:  # noqa: BLE001 - any backend error means "no shared cache"
            logger.warning(
                "cache unavailable for the GigaChat token",
                extra={"provider": self.provider, "op": op},
                exc_info=True,
            )
            return None

    # ---- the OAuth call -----------------------------------------------------

    def _auth_rejected(self, upstream_status: Any) -> ProviderError:
        return ProviderError(
            f"{self.provider} rejected the gateway's credentials",
            provider=self.provider,
            retryable=False,
            status=502,
            upstream_status=upstream_status if isinstance(upstream_status, int) else None,
            code=ErrorCode.UPSTREAM_AUTH_FAILED,
        )

    def _fetch(self) -> AccessToken:
        """Ask the OAuth host for a token; raise ProviderError on failure."""
        started = time.time()
        response = self.http.request(
            "POST",
            self.auth_url,
            data={"scope": self.scope},
            headers={
                "Authorization": f"Basic {self._credential}",
                # Required by the OAuth host: a uuid4 per request.
                "RqUID": str(uuid.uuid4()),
                "Accept": "application/json",
            },
            timeout=(self.http.timeout[0], self.auth_timeout_s),
        )
        try:
            body = response.content
        finally:
            response.close()
        if response.status_code != 200:
            message = ""
            try:
                parsed = orjson.loads(body)
                if isinstance(parsed, dict):
                    message = str(parsed.get("message") or "")
            except orjson.JSONDecodeError:
                pass
            logger.warning(
                "GigaChat OAuth request failed",
                extra={
                    "provider": self.provider,
                    "upstream_status": response.status_code,
                    "error": sanitize_upstream_message(message),
                },
            )
            if response.status_code in (400, 401, 403):
                # A wrong key or scope stays wrong: remember it briefly so
                # every worker does not hammer the OAuth host with it.
                self._cache(
                    "set",
                    self.failure_key,
                    {"upstream_status": response.status_code},
                    _FAILURE_TTL_S,
                )
                raise self._auth_rejected(response.status_code)
            raise error_from_status(
                self.provider,
                response.status_code,
                f"OAuth: {message}" if message else "OAuth request failed",
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
        try:
            data = orjson.loads(body)
            if "access_token" in data:
                value, expires = data["access_token"], data["expires_at"]
            else:
                value, expires = data["tok"], data["exp"]
            expires_at = expires_at_seconds(expires)
            if not isinstance(value, str) or not value:
                raise ValueError("empty access token")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise bad_response(
                self.provider,
                f"{self.provider} sent an OAuth response in an unexpected shape",
            ) from exc
        lifetime = expires_at - started
        if lifetime <= 0:
            logger.warning(
                "GigaChat issued an already expired token; check the clock",
                extra={"provider": self.provider, "lifetime_s": round(lifetime, 3)},
            )
        # Refresh a margin ahead of expiry, but never later than half-way
        # through a short lifetime, so a short-lived token is still reused.
        margin = min(self.refresh_margin_s, max(lifetime, 0.0) / 2)
        logger.info(
            "GigaChat access token fetched",
            extra={"provider": self.provider, "lifetime_s": round(lifetime, 1)},
        )
        return AccessToken(value=value, expires_at=expires_at, refresh_at=expires_at - margin)
