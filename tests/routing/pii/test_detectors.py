"""The PII detectors against a labelled Russian corpus, with precision and
recall computed and reported, plus the checksum rules one by one."""

from __future__ import annotations

from collections import Counter

import pytest

from routing.pii.detectors import find, iban_valid, inn_valid, luhn_valid, ogrn_valid, snils_valid
from tests.routing.pii.corpus import NEGATIVES, POSITIVES

# The bar the corpus must clear; the measured figures are printed (pytest -s)
# and recorded in README.md ("Data residency and PII").
MIN_PRECISION = 0.97
MIN_RECALL = 0.97


def _score() -> tuple[Counter[str], Counter[str], Counter[str], list[str]]:
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    misses: list[str] = []
    for text, expected in POSITIVES + NEGATIVES:
        got = Counter((f.kind, f.value(text)) for f in find(text))
        want = Counter(expected)
        for item in (got & want).elements():
            tp[item[0]] += 1
        for item in (got - want).elements():
            fp[item[0]] += 1
            misses.append(f"false positive {item} in {text!r}")
        for item in (want - got).elements():
            fn[item[0]] += 1
            misses.append(f"missed {item} in {text!r}")
    return tp, fp, fn, misses


def test_corpus_precision_and_recall() -> None:
    tp, fp, fn, misses = _score()
    kinds = sorted(set(tp) | set(fp) | set(fn))
    print("\nkind       tp  fp  fn  precision  recall")
    for kind in kinds:
        p = tp[kind] / ((tp[kind] + fp[kind]) or 1)
        r = tp[kind] / ((tp[kind] + fn[kind]) or 1)
        print(f"{kind:<9} {tp[kind]:>3} {fp[kind]:>3} {fn[kind]:>3}  {p:9.3f}  {r:6.3f}")
    total_tp, total_fp, total_fn = sum(tp.values()), sum(fp.values()), sum(fn.values())
    precision = total_tp / (total_tp + total_fp)
    recall = total_tp / (total_tp + total_fn)
    print(
        f"all       {total_tp:>3} {total_fp:>3} {total_fn:>3}  {precision:9.3f}  {recall:6.3f}"
        f"  ({len(POSITIVES)} positive and {len(NEGATIVES)} look-alike sentences)"
    )
    for line in misses:
        print(line)
    assert set(tp) == {"passport", "snils", "inn", "ogrn", "phone", "email", "card", "account"}
    assert precision >= MIN_PRECISION, misses
    assert recall >= MIN_RECALL, misses


@pytest.mark.parametrize(
    ("check", "good", "bad"),
    [
        (inn_valid, "7707083893", "7707083894"),
        (inn_valid, "500100732259", "500100732258"),
        (snils_valid, "11223344595", "11223344596"),
        (ogrn_valid, "1027700132195", "1027700132196"),
        (ogrn_valid, "304500116000157", "304500116000158"),
        (luhn_valid, "4111111111111111", "4111111111111112"),
        (iban_valid, "DE89370400440532013000", "DE89370400440532013001"),
    ],
)
def test_checksums_tell_real_numbers_from_random_ones(check, good, bad) -> None:  # type: ignore[no-untyped-def]
    assert check(good)
    assert not check(bad)


def test_snils_below_the_checked_range_is_not_flagged() -> None:
    # Numbers up to 001-001-998 were issued without a check number.
    assert not snils_valid("00100199800")


def test_findings_never_overlap_and_come_in_order() -> None:
    text = "почта a.b@mail.ru, IBAN DE89 3704 0044 0532 0130 00, тел 8 916 123-45-67"
    findings = find(text)
    assert [f.kind for f in findings] == ["email", "account", "phone"]
    assert all(a.end <= b.start for a, b in zip(findings, findings[1:], strict=False))
