"""Yandex Cloud credentials: API keys and service-account IAM tokens.

Two ways in, chosen by the provider's ``options.auth``:

``api_key`` (default)
    ``Authorization: Api-Key <credential>``. Nothing to refresh.

``service_account``
    An *authorized key* (JSON with ``id``, ``service_account_id`` and a PEM
    ``private_key``) signs a PS256 JWT, which the IAM API exchanges for a
    bearer token valid for up to 12 hours. The key JSON is the credential
    itself, or the file named by ``options.service_account_key_file``.

IAM tokens are cached twice: in the process (no cache round trip on the hot
path) and in ``django.core.cache`` so every worker and host shares one
token. A token is used until about an hour before it expires
(``options.iam_refresh_margin_s``, default 3600, halved for tokens that
live less than two hours), then refreshed by exactly one worker: the
first to win ``cache.add`` on a lock key exchanges a JWT while the others
keep using the old token if it is still valid, or wait briefly for the
winner's token. Signing uses ``cryptography`` directly; a JWT is three
base64url segments and needs no further library.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.core.cache import cache

from providers.base import ProviderConfig
from providers.errors import ProviderError, bad_response, sanitize_upstream_message
from providers.http import HttpClient
from xrouter_site.errors import ErrorCode

logger = logging.getLogger(__name__)

IAM_TOKENS_URL = "https://iam.api.cloud.yandex.net/iam/v1/tokens"
# Yandex accepts JWTs that live at most an hour; a short life limits what a
# leaked JWT is worth, and it is used once anyway.
JWT_LIFETIME_S = 600
DEFAULT_REFRESH_MARGIN_S = 3600.0
# How long a worker that lost the refresh race waits for the winner.
SINGLE_FLIGHT_WAIT_S = 5.0
_LOCK_TTL_S = 30


@dataclass(frozen=True, slots=True)
class AuthorizedKey:
    """A service account's authorized key, as ``yc iam key create`` writes it."""

    key_id: str
    service_account_id: str
    private_key_pem: str

    @classmethod
    def from_json(cls, text: str) -> AuthorizedKey:
        """Parse the key file's JSON; raise ValueError naming what is missing."""
        try:
            data = json.loads(text)
        except ValueError:
            raise ValueError("the service-account key is not valid JSON") from None
        missing = [k for k in ("id", "service_account_id", "private_key") if not data.get(k)]
        if missing:
            raise ValueError(f"the service-account key lacks {', '.join(missing)}")
        return cls(str(data["id"]), str(data["service_account_id"]), str(data["private_key"]))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_jwt(key: AuthorizedKey, *, audience: str, now: float | None = None) -> str:
    """Return a PS256 JWT asking the IAM API for a token for ``key``'s account.

    PS256 is RSASSA-PSS with SHA-256, MGF1(SHA-256) and a 32-byte salt (the
    salt length equals the digest size, as RFC 7518 requires).
    """
    issued = int(now if now is not None else time.time())
    header = {"typ": "JWT", "alg": "PS256", "kid": key.key_id}
    payload = {
        "iss": key.service_account_id,
        "aud": audience,
        "iat": issued,
        "exp": issued + JWT_LIFETIME_S,
    }
    signing_input = (_b64url(orjson.dumps(header)) + "." + _b64url(orjson.dumps(payload))).encode(
        "ascii"
    )
    private_key = serialization.load_pem_private_key(key.private_key_pem.encode(), None)
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise ValueError("the service-account key is not an RSA key")
    signature = private_key.sign(
        signing_input,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )
    return signing_input.decode("ascii") + "." + _b64url(signature)


def _parse_expiry(value: Any) -> float:
    """Return an RFC 3339 ``expiresAt`` as POSIX seconds (nanoseconds cut off)."""
    text = str(value).strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # Yandex sends nanoseconds; fromisoformat takes at most microseconds.
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


@dataclass(frozen=True, slots=True)
class IamToken:
    token: str
    expires_at: float
    refresh_at: float


class IamTokenSource:
    """Hand out a valid IAM token for one service account.

    Usage::

        source = IamTokenSource(config, http)
        headers = {"Authorization": f"Bearer {source.token()}"}
        ...
        source.invalidate(token)  # after a 401, then retry once

    Thread- and greenlet-safe; shares tokens across processes through the
    Django cache.
    """

    def __init__(self, config: ProviderConfig, http: HttpClient) -> None:
        """Read the key and IAM settings from the provider config."""
        options = config.options
        key_file = options.get("service_account_key_file")
        try:
            text = Path(key_file).read_text("utf-8") if key_file else config.credential
        except OSError as exc:
            raise ValueError(f"cannot read service_account_key_file: {exc}") from None
        self.key = AuthorizedKey.from_json(text)
        self.provider = config.name
        self.http = http
        self.iam_url = str(options.get("iam_url") or IAM_TOKENS_URL)
        # The audience is fixed by Yandex even when iam_url points elsewhere
        # (a proxy, the emulator).
        self.audience = str(options.get("iam_audience") or IAM_TOKENS_URL)
        self.margin = float(options.get("iam_refresh_margin_s", DEFAULT_REFRESH_MARGIN_S))
        digest = hashlib.sha256(
            f"{self.iam_url}|{self.key.service_account_id}|{self.key.key_id}".encode()
        ).hexdigest()[:32]
        self.cache_key = f"yandexgpt:iam:{digest}"
        self.lock_key = f"{self.cache_key}:lock"
        self._local: IamToken | None = None
        self._lock = threading.Lock()
        self.exchanges = 0  # JWT exchanges this process made (tests, metrics)

    def token(self) -> str:
        """Return a token that is valid now, refreshing it if it is due."""
        now = time.time()
        local = self._local
        if local is not None and now < local.refresh_at:
            return local.token
        with self._lock:
            local = self._local
            if local is not None and time.time() < local.refresh_at:
                return local.token
            fresh = self._shared_or_refresh(local)
            self._local = fresh
            return fresh.token

    def invalidate(self, token: str) -> None:
        """Forget ``token`` (the upstream refused it) here and in the cache."""
        with self._lock:
            if self._local is not None and self._local.token == token:
                self._local = None
            shared = self._cache_get()
            if shared is not None and shared.token == token:
                try:
                    cache.delete(self.cache_key)
                except Exception:
                    logger.warning("shared cache unavailable for IAM token", exc_info=True)

    # --- internals ---------------------------------------------------------

    def _cache_get(self) -> IamToken | None:
        try:
            raw = cache.get(self.cache_key)
        except Exception:
            logger.warning("shared cache unavailable for IAM token", exc_info=True)
            return None
        if not isinstance(raw, dict):
            return None
        try:
            return IamToken(str(raw["token"]), float(raw["expires_at"]), float(raw["refresh_at"]))
        except (KeyError, TypeError, ValueError):
            return None

    def _shared_or_refresh(self, stale: IamToken | None) -> IamToken:
        shared = self._cache_get()
        if shared is not None and time.time() < shared.refresh_at:
            return shared
        usable = shared if shared is not None else stale
        try:
            won = bool(cache.add(self.lock_key, "1", _LOCK_TTL_S))
        except Exception:
            logger.warning("shared cache unavailable for IAM refresh lock", exc_info=True)
            won = True
        if won:
            try:
                # The previous holder may have stored a fresh token between
                # our first look and winning the lock: use it, don't refresh.
                shared = self._cache_get()
                if shared is not None and time.time() < shared.refresh_at:
                    return shared
                return self._exchange()
            finally:
                try:
                    cache.delete(self.lock_key)
                except Exception:
                    logger.warning("could not release the IAM refresh lock", exc_info=True)
        # Another worker is refreshing: an old token that still works is
        # better than waiting for the new one.
        if usable is not None and time.time() < usable.expires_at - 60:
            return usable
        deadline = time.monotonic() + SINGLE_FLIGHT_WAIT_S
        while time.monotonic() < deadline:
            time.sleep(0.05)
            shared = self._cache_get()
            if shared is not None and time.time() < shared.refresh_at:
                return shared
        # The winner died or hangs; do not leave this request without a token.
        return self._exchange()

    def _exchange(self) -> IamToken:
        jwt = sign_jwt(self.key, audience=self.audience)
        response = self.http.post_json(self.iam_url, {"jwt": jwt})
        self.exchanges += 1
        if response.status_code >= 400:
            message = ""
            try:
                body = orjson.loads(response.content)
                error = body.get("error") if isinstance(body, dict) else None
                message = (error or body).get("message", "") if isinstance(body, dict) else ""
            except (orjson.JSONDecodeError, AttributeError):
                message = ""
            logger.error(
                "IAM token exchange failed",
                extra={
                    "provider": self.provider,
                    "upstream_status": response.status_code,
                    "error": sanitize_upstream_message(message),
                },
            )
            retryable = response.status_code >= 500 or response.status_code == 429
            raise ProviderError(
                f"{self.provider}: the IAM token exchange failed (HTTP {response.status_code})",
                provider=self.provider,
                retryable=retryable,
                status=502 if not retryable else 503,
                upstream_status=response.status_code,
                code=ErrorCode.UPSTREAM_AUTH_FAILED if not retryable else "upstream_unavailable",
            )
        try:
            data = orjson.loads(response.content)
            token = str(data["iamToken"])
            expires_at = _parse_expiry(data["expiresAt"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise bad_response(
                self.provider,
                f"{self.provider}: the IAM API sent a token in an unexpected shape",
            ) from exc
        now = time.time()
        lifetime = max(0.0, expires_at - now)
        margin = self.margin if lifetime >= 2 * self.margin else lifetime / 2
        fresh = IamToken(token, expires_at, now + lifetime - margin)
        try:
            cache.set(
                self.cache_key,
                {"token": fresh.token, "expires_at": expires_at, "refresh_at": fresh.refresh_at},
                max(1, int(lifetime - 60)),
            )
        except Exception:
            logger.warning("shared cache unavailable for IAM token store", exc_info=True)
        return fresh
