"""Micro-benchmark of the PII guardrail on the hot path (issue 21: < 1 ms).

Times what the gateway does per request in ``redact`` mode on a 2 KB
Russian prompt: scan and redact every message (:func:`routing.pii.guard_chat`),
then restore the placeholders in an answer of the same size. Also times
``block`` and a 2 KB prompt with no personal data (the common case).

    python bench/pii.py [--iterations 2000]

Runs in one process on one core, no server, bounded by ``--iterations``;
prints a Markdown table (median, p99 and mean in microseconds per request).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xrouter_site.settings")

import django  # noqa: E402

django.setup()

from providers.base import ChatRequest, Message  # noqa: E402
from routing.pii import PiiDetected, guard_chat  # noqa: E402

_WITH_PII = (
    "Здравствуйте! Прошу оформить полис ОСАГО на Иванова Петра Сергеевича. "
    "Паспорт 4506 123456, выдан ОВД Тверского района г. Москвы 12.03.2015, "
    "СНИЛС 112-233-445 95, ИНН 500100732259. Контактный телефон +7 (916) 123-45-67, "
    "запасной 8 800 555-35-35, почта petrov@mail.ru. Оплата картой 2202 2012 3456 7895, "
    "либо переводом на счёт 40817810099910004312. Работодатель ООО «Ромашка», "
    "ИНН 7707083893, ОГРН 1027700132195. "
)
_FILLER = (
    "Автомобиль используется для поездок на работу и на дачу по выходным, "
    "стаж вождения двенадцать лет, аварий не было, хранится в гараже. "
)
_CLEAN = (
    "Расскажи, пожалуйста, как устроено обязательное страхование автогражданской "
    "ответственности, какие документы нужны для полиса и сколько он стоит в 2025 году. "
)


def _text(head: str, size: int = 2048) -> str:
    text = head
    while len(text.encode()) < size:
        text += _FILLER
    return text.encode()[:size].decode(errors="ignore")


def _time(fn: Callable[[], object], iterations: int) -> list[float]:
    for _ in range(min(200, iterations)):  # warm-up: compiled regexes, caches
        fn()
    samples = []
    for _ in range(iterations):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1e6)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=2000)
    args = parser.parse_args()
    iterations = max(10, min(args.iterations, 100_000))

    with_pii = _text(_WITH_PII)
    clean = _text(_CLEAN)
    request = ChatRequest(
        model="m",
        messages=[
            Message(role="system", content="Ты помощник страховой компании."),
            Message(role="user", content=with_pii),
        ],
    )
    clean_request = ChatRequest(model="m", messages=[Message(role="user", content=clean)])
    guard = guard_chat(request, "redact")
    assert guard is not None
    answer = str(guard.request.messages[1].content)

    def redact_and_restore() -> None:
        g = guard_chat(request, "redact")
        assert g is not None
        g.redaction.restore(answer)

    def block() -> None:
        try:
            guard_chat(request, "block")
        except PiiDetected:
            pass

    found = sum(guard.counts.values())
    cases = [
        (f"redact + restore, 2 KB prompt with {found} values", redact_and_restore),
        (f"block, 2 KB prompt with {found} values", block),
        ("redact, 2 KB prompt without personal data", lambda: guard_chat(clean_request, "redact")),
        ("off", lambda: guard_chat(request, "off")),
    ]
    print(
        f"prompt: {len(with_pii.encode())} bytes UTF-8 ({len(with_pii)} characters); "
        f"found: {guard.counts}; {iterations} iterations each, one process"
    )
    print()
    print("| case | median µs | p99 µs | mean µs |")
    print("|---|---|---|---|")
    for name, fn in cases:
        samples = sorted(_time(fn, iterations))
        p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
        print(
            f"| {name} | {statistics.median(samples):.0f} | {p99:.0f} | "
            f"{statistics.fmean(samples):.0f} |"
        )


if __name__ == "__main__":
    main()
