from __future__ import annotations

import math
import re

import pytest

from keys import tokens

KEY_PATTERN = re.compile(r"^xr_(live|test)_[0-9A-Za-z]{43}[0-9A-Za-z]{6}$")


def test_generated_key_matches_the_published_pattern() -> None:
    new = tokens.generate("live")
    assert KEY_PATTERN.match(new.plaintext)
    assert new.prefix == new.plaintext[:12]
    assert new.last4 == new.plaintext[-4:]
    assert tokens.is_well_formed(new.plaintext) is True


def test_payload_carries_at_least_256_bits() -> None:
    assert tokens.PAYLOAD_LEN * math.log2(62) >= 256


def test_keys_are_unique_and_random() -> None:
    keys = {tokens.generate().plaintext for _ in range(2000)}
    assert len(keys) == 2000
    # Every payload position takes many values: no fixed or padded characters.
    payloads = [k[8:51] for k in keys]
    for position in range(tokens.PAYLOAD_LEN):
        assert len({p[position] for p in payloads}) > 30


def test_test_environment_prefix() -> None:
    assert tokens.generate("test").plaintext.startswith("xr_test_")
    with pytest.raises(ValueError, match="key environment"):
        tokens.generate("prod")


def test_digest_is_sha256_hex() -> None:
    assert tokens.digest("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


@pytest.mark.parametrize("position", [8, 30, 50, 52, -1])
def test_one_changed_character_fails_the_checksum(position: int) -> None:
    key = tokens.generate().plaintext
    chars = list(key)
    chars[position] = "A" if chars[position] != "A" else "B"
    assert tokens.is_well_formed("".join(chars)) is False


@pytest.mark.parametrize(
    "candidate",
    ["", "xr_live_", "sk-abc", "xr-live-" + "a" * 49, "xr_prod_" + "a" * 49, "xr_live_" + "a" * 48],
)
def test_malformed_keys_are_not_well_formed(candidate: str) -> None:
    assert tokens.is_well_formed(candidate) is False
