"""Find personal data in text: Russian identifiers and common ones.

Kinds: ``passport`` (series and number), ``snils``, ``inn`` (10 and 12
digits), ``ogrn`` (13, and OGRNIP's 15), ``phone`` (+7 / 8), ``email``,
``card`` (15-19 digits, Luhn), ``account`` (IBAN with its mod-97 check, and Russian
20-digit account numbers by their structure).

Every identifier that has a check digit is validated, so a random number of
the right length is not flagged: INN, OGRN, SNILS, card numbers and IBANs
must pass their checksums. The shape of the digits matters too: INN and OGRN
are never written in groups, so ``1 000 000 000 000`` (thousands groups) is
an amount, not an OGRN; a passport is ``DD DD DDDDDD`` / ``DDDD DDDDDD``, or
ten bare digits right after the word "паспорт"/"серия".

One pass of one regular expression finds every run of digits (with the
separators people type: spaces, hyphens, parentheses, a leading ``+``);
e-mail addresses and IBANs have a pass each. A 2 KB prompt takes well under
a millisecond (``bench/pii.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KINDS = ("passport", "snils", "inn", "ogrn", "phone", "email", "card", "account")


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    start: int
    end: int

    def value(self, text: str) -> str:
        return text[self.start : self.end]


# A run of digits with single separators between them (at most two
# separator characters in a row, for "(916) 123"), optionally after "+".
_DIGIT_RUN = re.compile(r"(?<![\w+])\+?\d(?:[ \-()\u00a0]{0,2}\d)*(?!\w)")
_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[^\W_](?:[\w-]*[^\W_])?\.)+[^\W\d_]{2,}(?![\w-])"
)
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
_SEPARATORS = re.compile(r"[ \-()\u00a0]+")
_PASSPORT_WORDS = re.compile(r"(?:паспорт|серия|серии|серию)\w*[^\w\n]{0,12}$", re.IGNORECASE)
# "серия 45 06 номер 123456": series and number with words between them.
_PASSPORT_SPLIT = re.compile(
    r"сери[яиюе]\s*(?P<series>\d{2} ?\d{2})\s*,?\s*(?:номер|№|n)\s*\d{6}(?!\d)", re.IGNORECASE
)

_INN10 = (2, 4, 10, 3, 5, 9, 4, 6, 8)
_INN11 = (7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
_INN12 = (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
# Currency codes in positions 6-8 of a Russian account number.
_ACCOUNT_CURRENCIES = frozenset({"810", "643", "840", "978", "156", "392", "826", "756"})


def _weighted(digits: str, weights: tuple[int, ...]) -> int:
    return sum(int(d) * w for d, w in zip(digits, weights, strict=False)) % 11 % 10


def inn_valid(digits: str) -> bool:
    """The INN check digit(s): one for a company (10), two for a person (12)."""
    if len(digits) == 10:
        return _weighted(digits, _INN10) == int(digits[9])
    if len(digits) == 12:
        return _weighted(digits, _INN11) == int(digits[10]) and _weighted(digits, _INN12) == int(
            digits[11]
        )
    return False


def snils_valid(digits: str) -> bool:
    """SNILS: the last two digits check the first nine (numbers above 001-001-998)."""
    if len(digits) != 11 or int(digits[:9]) <= 1001998:
        return False
    total = sum(int(d) * (9 - i) for i, d in enumerate(digits[:9]))
    check = total % 101 if total > 101 else total
    if check in (100, 101):
        check = 0
    return check == int(digits[9:])


def ogrn_valid(digits: str) -> bool:
    """OGRN (13 digits, mod 11) and OGRNIP (15 digits, mod 13)."""
    if len(digits) == 13:
        return int(digits[:12]) % 11 % 10 == int(digits[12])
    if len(digits) == 15:
        return int(digits[:14]) % 13 % 10 == int(digits[14])
    return False


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def iban_valid(compact: str) -> bool:
    """ISO 13616 mod-97: the rearranged IBAN, letters as 10..35, leaves 1."""
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def _account_shape(digits: str) -> bool:
    # 20 digits: balance account (first digit 3 or 4 for client and
    # correspondent accounts), currency code, check digit, the rest.
    return digits[0] in "34" and digits[5:8] in _ACCOUNT_CURRENCIES


def _classify(raw: str, digits: str, before: str) -> str:
    """Return the kind of one digit run, or "" when it is not personal data."""
    n = len(digits)
    groups = [g for g in _SEPARATORS.split(raw.lstrip("+")) if g]
    bare = len(groups) == 1
    sizes = [len(g) for g in groups]
    if raw.startswith("+"):
        return "phone" if n == 11 and digits[0] == "7" else ""
    if n == 11:
        if digits[0] in "78" and not bare and sizes[:2] in ([1, 3], [4, 3], [1, 10], [11]):
            return "phone"
        if (bare or sizes == [3, 3, 3, 2]) and snils_valid(digits):
            return "snils"
        if digits[0] == "8" and (bare or sizes[0] == 1) and digits[1] in "3489":
            return "phone"
        return ""
    if n == 10:
        # The first two digits are a region code: "00" is none.
        if digits[:2] == "00":
            return ""
        if sizes in ([2, 2, 6], [4, 6]):
            return "passport"
        if bare and _PASSPORT_WORDS.search(before):
            return "passport"
        return "inn" if bare and inn_valid(digits) else ""
    if n == 12:
        return "inn" if bare and digits[:2] != "00" and inn_valid(digits) else ""
    if n == 20:
        return "account" if (bare or set(sizes) <= {4, 5}) and _account_shape(digits) else ""
    # OGRN starts with 1 or 5 (a company), OGRNIP with 3 (a sole trader).
    if bare and ((n == 13 and digits[0] in "15") or (n == 15 and digits[0] == "3")):
        if ogrn_valid(digits):
            return "ogrn"
    # Cards are 15 (Amex) to 19 digits; 13- and 14-digit runs are EAN
    # barcodes and the like far more often than the long-retired 13-digit Visa.
    if 15 <= n <= 19 and digits[0] in "23456":
        card_groups = bare or all(s == 4 for s in sizes[:-1]) or sizes == [4, 6, 5]
        if card_groups and luhn_valid(digits):
            return "card"
    return ""


def find(text: str) -> list[Finding]:
    """Return the personal data in ``text``, in order, never overlapping."""
    found: list[Finding] = []
    if "@" in text:
        found.extend(Finding("email", m.start(), m.end()) for m in _EMAIL.finditer(text))
    for m in _IBAN.finditer(text):
        if iban_valid(m.group().replace(" ", "")):
            found.append(Finding("account", m.start(), m.end()))
    for m in _PASSPORT_SPLIT.finditer(text):
        found.append(Finding("passport", m.start("series"), m.end()))
    for m in _DIGIT_RUN.finditer(text):
        raw = m.group()
        digits = "".join(c for c in raw if c.isdigit())
        if len(digits) < 10:
            continue
        kind = _classify(raw, digits, text[max(0, m.start() - 40) : m.start()])
        if kind:
            found.append(Finding(kind, m.start(), m.end()))
    if len(found) < 2:
        return found
    # E-mail and IBAN matches may contain digit runs: keep the first,
    # longest finding at each place.
    found.sort(key=lambda f: (f.start, -f.end))
    kept: list[Finding] = []
    for finding in found:
        if not kept or finding.start >= kept[-1].end:
            kept.append(finding)
    return kept
