"""PKCE (RFC 7636) helpers shared by the OAuth server and the key exchange.

Only S256 exists here: RFC 9700 2.1.1 makes it the one method to accept.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

# RFC 7636 4.1: 43-128 characters of [A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~".
VERIFIER_RE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
# A challenge is BASE64URL(SHA-256), unpadded: always 43 characters.
CHALLENGE_RE = re.compile(r"[A-Za-z0-9\-_]{43}")
S256 = "S256"


def s256_challenge(verifier: str) -> str:
    """Return BASE64URL(SHA256(ASCII(verifier))) without ``=`` padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verifier_is_well_formed(verifier: str | None) -> bool:
    """Return True if ``verifier`` has the length and alphabet RFC 7636 requires."""
    return verifier is not None and VERIFIER_RE.fullmatch(verifier) is not None


def challenge_is_well_formed(challenge: str | None) -> bool:
    """Return True if ``challenge`` looks like an unpadded S256 challenge."""
    return challenge is not None and CHALLENGE_RE.fullmatch(challenge) is not None


def s256_matches(verifier: str | None, challenge: str) -> bool:
    """Return True if ``verifier`` is well formed and hashes to ``challenge``."""
    if not verifier_is_well_formed(verifier):
        return False
    assert verifier is not None  # for the type checker; checked above
    return hmac.compare_digest(s256_challenge(verifier), challenge)
