"""The API key format: ``xr_<env>_<payload><checksum>``.

- ``env`` is ``live`` or ``test``, so a leaked test key is told apart.
- ``payload`` is 43 base62 characters from :mod:`secrets`: 256 bits.
- ``checksum`` is the CRC32 of the payload in 6 base62 characters, so a
  typo or a scanner's false positive is rejected without any lookup.

Underscores (not dashes) keep the whole key selectable by a double click.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import zlib
from dataclasses import dataclass

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PAYLOAD_LEN = 43  # 62**43 > 2**256
CHECKSUM_LEN = 6  # 62**6 > 2**32
ENVIRONMENTS = ("live", "test")
KEY_RE = re.compile(
    rf"^xr_(live|test)_([0-9A-Za-z]{{{PAYLOAD_LEN}}})([0-9A-Za-z]{{{CHECKSUM_LEN}}})$"
)
# Shown in the UI: "xr_live_" plus four payload characters.
DISPLAY_PREFIX_LEN = 12


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rem = divmod(number, 62)
        chars.append(_ALPHABET[rem])
    if number:
        raise ValueError("number does not fit the width")
    return "".join(reversed(chars))


def _checksum(payload: str) -> str:
    return _base62(zlib.crc32(payload.encode("ascii")), CHECKSUM_LEN)


@dataclass(frozen=True)
class NewKey:
    plaintext: str
    digest: str
    prefix: str
    last4: str


def generate(env: str = "live") -> NewKey:
    """Return a new random key with its digest and display parts."""
    if env not in ENVIRONMENTS:
        raise ValueError(f"key environment must be one of {ENVIRONMENTS}")
    payload = _base62(secrets.randbits(256), PAYLOAD_LEN)
    plaintext = f"xr_{env}_{payload}{_checksum(payload)}"
    return NewKey(
        plaintext=plaintext,
        digest=digest(plaintext),
        prefix=plaintext[:DISPLAY_PREFIX_LEN],
        last4=plaintext[-4:],
    )


def is_well_formed(key: str) -> bool:
    """Return True if ``key`` has our format and a correct checksum."""
    match = KEY_RE.match(key)
    if match is None:
        return False
    return secrets.compare_digest(_checksum(match.group(2)), match.group(3))


def digest(key: str) -> str:
    """Return the SHA-256 hex digest under which a key is stored.

    A fast hash is enough: keys carry 256 random bits, so there is nothing
    for a slow KDF to protect against.
    """
    return hashlib.sha256(key.encode("utf-8")).hexdigest()
