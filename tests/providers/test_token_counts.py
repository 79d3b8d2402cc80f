"""Real token counts where the prompt estimate would decide a refusal.

The estimate (routing/limits/prompt_size.py) is wrong by a bounded factor;
these tests measure that factor on ``token_corpus/`` against the emulators'
counters (which model the documented tokenizers, see
providers/emulators/tokenizer.py), and show that inside the bound the
provider's count decides a tokens-per-minute, budget or context refusal,
both ways, for GigaChat and YandexGPT, and that a failing counter leaves the
decision to the estimate.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest
from prometheus_client import REGISTRY

from keys.services import CreatedKey
from providers.base import Message, ProviderConfig
from providers.emulators.testing import RunningEmulator, start_emulator
from providers.gigachat.provider import GigaChatProvider
from providers.yandexgpt.adapter import YandexGPTProvider
from routing.limits.prompt_size import (
    ESTIMATE_HIGH,
    ESTIMATE_LOW,
    MESSAGE_OVERHEAD,
    PromptSize,
    estimate_prompt_tokens,
)

CORPUS = Path(__file__).parent / "token_corpus"
CREDENTIALS = base64.b64encode(b"counts:secret").decode()
FOLDER = "b1gemulatorfolder"
MAX_TOKENS = 10
RUSSIAN = (CORPUS / "ru_support.txt").read_text(encoding="utf-8")
# Russian with figures: GigaChat's count is above the estimate here.
INVOICE = (CORPUS / "ru_invoice.txt").read_text(encoding="utf-8")
# Dense code: YandexGPT's count is above the estimate here.
CODE = "y = {k: v for k, v in d.items() if v is not None and k[0] != '_'}"


def _corpus() -> dict[str, str]:
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(CORPUS.glob("*.txt"))}


@pytest.fixture(scope="module")
def giga_emulator() -> Iterator[RunningEmulator]:
    emulator = start_emulator("gigachat", stream_tokens=3, credentials=CREDENTIALS)
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="module")
def yandex_emulator() -> Iterator[RunningEmulator]:
    emulator = start_emulator("yandexgpt", stream_tokens=3, api_key="yc-counts")
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def emulators(
    giga_emulator: RunningEmulator, yandex_emulator: RunningEmulator
) -> Iterator[tuple[RunningEmulator, RunningEmulator]]:
    giga_emulator.control.reset()
    yandex_emulator.control.reset()
    yield giga_emulator, yandex_emulator
    giga_emulator.control.reset()
    yandex_emulator.control.reset()


@pytest.fixture
def counters(
    emulators: tuple[RunningEmulator, RunningEmulator],
) -> Iterator[dict[str, Callable[[str], int]]]:
    """The real adapters' prompt counters against the emulators, by provider."""
    giga_emulator, yandex_emulator = emulators
    giga = GigaChatProvider(
        ProviderConfig(
            name="giga",
            kind="gigachat",
            base_url=giga_emulator.url("/api/v1"),
            credential=CREDENTIALS,
            options={"auth_url": giga_emulator.url("/api/v2/oauth")},
        )
    )
    yandex = YandexGPTProvider(
        ProviderConfig(
            name="yandex",
            kind="yandexgpt",
            base_url=yandex_emulator.base_url,
            credential="yc-counts",
            options={"folder_id": FOLDER},
        )
    )
    yield {
        "gigachat": lambda text: giga.count_prompt_tokens(
            "GigaChat-2-Max", [Message("user", text)]
        ),
        "yandexgpt": lambda text: yandex.count_prompt_tokens(
            "yandexgpt-lite/latest", [Message("user", text)]
        ),
    }
    giga.close()
    yandex.close()


# --- the estimate's error on the corpus ----------------------------------------------


@pytest.mark.parametrize("provider", ["gigachat", "yandexgpt"])
def test_the_estimate_stays_within_its_stated_bound_on_the_corpus(
    counters: dict[str, Callable[[str], int]], provider: str
) -> None:
    """Every corpus text: LOW x (estimate - markup) <= real <= HIGH x estimate."""
    outside = {}
    for name, text in _corpus().items():
        estimate = estimate_prompt_tokens([text])
        real = counters[provider](text)
        if not ESTIMATE_LOW * (estimate - MESSAGE_OVERHEAD) <= real <= ESTIMATE_HIGH * estimate:
            outside[name] = (real, estimate)
    assert outside == {}


def test_the_gigachat_counter_counts_russian_as_documented(
    counters: dict[str, Callable[[str], int]],
) -> None:
    """3-4 characters a token in Russian prose (Sber), about 1.45x English (issue 16)."""
    corpus = _corpus()
    topics = [n[3:] for n in corpus if n.startswith("ru_") and n != "ru_invoice"]
    ru_chars = sum(len(corpus[f"ru_{t}"]) for t in topics)
    ru = sum(counters["gigachat"](corpus[f"ru_{t}"]) for t in topics)
    en = sum(counters["gigachat"](corpus[f"en_{t}"]) for t in topics)
    assert 3.0 <= ru_chars / ru <= 4.0
    assert 1.3 <= ru / en <= 1.6
    # Word counting (the emulators' old counter) made Russian cheaper than English.
    ru_words = sum(len(corpus[f"ru_{t}"].split()) for t in topics)
    en_words = sum(len(corpus[f"en_{t}"].split()) for t in topics)
    assert ru_words < en_words


def test_the_yandex_counter_counts_russian_as_documented(
    counters: dict[str, Callable[[str], int]],
) -> None:
    """About 5.8 characters a token in Russian (Yandex's own example, YandexGPT Pro)."""
    corpus = _corpus()
    prose = [t for n, t in corpus.items() if n.startswith("ru_") and n != "ru_invoice"]
    chars = sum(len(text) for text in prose)
    tokens = sum(counters["yandexgpt"](text) for text in prose)
    assert 5.0 <= chars / tokens <= 6.5


def test_the_bound_is_what_prompt_size_uses() -> None:
    size = PromptSize.of([RUSSIAN])
    assert size.estimate == estimate_prompt_tokens([RUSSIAN])
    assert size.low == int(ESTIMATE_LOW * (size.estimate - MESSAGE_OVERHEAD))
    assert size.high == -(-ESTIMATE_HIGH * size.estimate // 1)
    assert size.decides(size.high) is True
    assert size.decides(size.low - 1) is True
    assert size.decides(size.estimate) is False
    asked: list[int] = []
    counted = PromptSize.of([RUSSIAN], counter=lambda: asked.append(1) or 7)
    assert (counted.count(), counted.count(), asked) == (7, 7, [1])
    assert (counted.low, counted.tokens, counted.high) == (7, 7, 7)


# --- decisions through the gateway ---------------------------------------------------


def catalog(giga: RunningEmulator, yandex: RunningEmulator) -> str:
    return f"""
providers:
  - name: giga
    kind: gigachat
    base_url: {giga.base_url}/api/v1
    api_key_env: TEST_COUNTS_GIGACHAT
    options: {{auth_url: {giga.base_url}/api/v2/oauth, read_timeout: 2}}
  - name: yandex
    kind: yandexgpt
    base_url: {yandex.base_url}
    api_key_env: TEST_COUNTS_YANDEX
    options: {{folder_id: {FOLDER}, read_timeout: 2}}
models:
  - id: gigachat/max
    provider: giga
    upstream: GigaChat-2-Max
    context_length: 4096
    pricing: {{prompt: 10, completion: 10}}
  - id: gigachat/small
    provider: giga
    upstream: GigaChat-2
    context_length: 80
  - id: yandex/lite
    provider: yandex
    upstream: yandexgpt-lite/latest
    context_length: 4096
    pricing: {{prompt: 10, completion: 10}}
  - id: yandex/small
    provider: yandex
    upstream: yandexgpt-lite/latest
    context_length: 80
"""


MODELS = {"gigachat": "gigachat/max", "yandexgpt": "yandex/lite"}
PROVIDERS = {"gigachat": "giga", "yandexgpt": "yandex"}
COUNT_PATHS = {
    "gigachat": "/api/v1/tokens/count",
    "yandexgpt": "/foundationModels/v1/tokenizeCompletion",
}


@pytest.fixture
def gateway(
    live_server: Any,
    transactional_db: None,
    emulators: tuple[RunningEmulator, RunningEmulator],
    load_catalog: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    monkeypatch.setenv("TEST_COUNTS_GIGACHAT", CREDENTIALS)
    monkeypatch.setenv("TEST_COUNTS_YANDEX", "yc-counts")
    load_catalog(catalog(*emulators))
    return f"{live_server.url}/v1"


def _client(gateway: str, key: CreatedKey) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway, api_key=key.plaintext, max_retries=0, timeout=20)


def _ask(gateway: str, key: CreatedKey, model: str, text: str, **kwargs: Any) -> Any:
    return _client(gateway, key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], **kwargs
    )


def _counts(provider: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "xrouter_token_counts_total", {"provider": PROVIDERS[provider], "outcome": outcome}
    )
    return value or 0.0


def _count_calls(emulators: tuple[RunningEmulator, RunningEmulator], provider: str) -> int:
    emulator = emulators[0] if provider == "gigachat" else emulators[1]
    return int(emulator.control.stats()["requests_by_path"].get(COUNT_PATHS[provider], 0))


@pytest.mark.parametrize("provider", ["gigachat", "yandexgpt"])
def test_far_from_every_limit_nothing_is_counted(
    gateway: str,
    make_key: Callable[..., CreatedKey],
    emulators: tuple[RunningEmulator, RunningEmulator],
    provider: str,
) -> None:
    key = make_key(tpm_limit=100_000)
    _ask(gateway, key, MODELS[provider], RUSSIAN, max_tokens=MAX_TOKENS)
    assert _count_calls(emulators, provider) == 0


@pytest.mark.parametrize("provider", ["gigachat", "yandexgpt"])
def test_the_real_count_admits_what_the_estimate_alone_would_refuse(
    gateway: str,
    make_key: Callable[..., CreatedKey],
    counters: dict[str, Callable[[str], int]],
    emulators: tuple[RunningEmulator, RunningEmulator],
    provider: str,
) -> None:
    """Russian prose: its estimate plus max_tokens is over the key's tpm, its count is not."""
    estimate = estimate_prompt_tokens([RUSSIAN])
    real = counters[provider](RUSSIAN)
    assert real < estimate
    key = make_key(tpm_limit=real + MAX_TOKENS)
    before = _counts(provider, "counted")
    completion = _ask(gateway, key, MODELS[provider], RUSSIAN, max_tokens=MAX_TOKENS)
    assert completion.choices[0].message.content
    assert _counts(provider, "counted") == before + 1
    assert _count_calls(emulators, provider) == 2  # the adapter fixture's, and the gateway's


@pytest.mark.parametrize(
    ("provider", "text"), [("gigachat", INVOICE), ("yandexgpt", CODE)], ids=["gigachat", "yandex"]
)
def test_the_real_count_refuses_what_the_estimate_alone_would_admit(
    gateway: str,
    make_key: Callable[..., CreatedKey],
    counters: dict[str, Callable[[str], int]],
    provider: str,
    text: str,
) -> None:
    """The estimate fits the tpm exactly; the real count is above it: 429, nothing reserved."""
    estimate = estimate_prompt_tokens([text])
    real = counters[provider](text)
    assert estimate < real <= ESTIMATE_HIGH * estimate
    key = make_key(tpm_limit=estimate + MAX_TOKENS)
    with pytest.raises(openai.RateLimitError) as refused:
        _ask(gateway, key, MODELS[provider], text, max_tokens=MAX_TOKENS)
    assert refused.value.code == "rate_limit_tokens"
    assert f"{estimate + MAX_TOKENS} tokens per minute" in refused.value.message
    # The refusal reserved nothing: a small request still fits.
    assert _ask(gateway, key, MODELS[provider], "да", max_tokens=1).choices


@pytest.mark.parametrize("provider", ["gigachat", "yandexgpt"])
def test_the_real_count_admits_what_the_estimate_alone_would_not_afford(
    gateway: str,
    make_key: Callable[..., CreatedKey],
    counters: dict[str, Callable[[str], int]],
    provider: str,
) -> None:
    """A budget that pays for the real prompt but not for the estimated one: served."""
    real = counters[provider](RUSSIAN)
    # 10 RUB per 1,000 tokens: exactly the real prompt and max_tokens.
    budget = Decimal(real + MAX_TOKENS) / 100
    assert estimate_prompt_tokens([RUSSIAN]) + MAX_TOKENS > real + MAX_TOKENS
    key = make_key(budget_rub=budget, budget_period="never")
    before = _counts(provider, "counted")
    completion = _ask(gateway, key, MODELS[provider], RUSSIAN, max_tokens=MAX_TOKENS)
    assert completion.choices[0].message.content
    assert _counts(provider, "counted") == before + 1


@pytest.mark.parametrize("provider", ["gigachat", "yandexgpt"])
def test_a_failing_counter_leaves_the_decision_to_the_estimate(
    gateway: str,
    make_key: Callable[..., CreatedKey],
    counters: dict[str, Callable[[str], int]],
    emulators: tuple[RunningEmulator, RunningEmulator],
    provider: str,
) -> None:
    """The counter answers 500: the estimate refuses, and the metric says it failed."""
    real = counters[provider](RUSSIAN)
    key = make_key(tpm_limit=real + MAX_TOKENS)
    _ask(gateway, key, MODELS[provider], "да", max_tokens=1)  # GigaChat: token fetched
    emulator = emulators[0] if provider == "gigachat" else emulators[1]
    emulator.control.set_config(fault="http_500", fault_count=1)
    before = _counts(provider, "failed")
    with pytest.raises(openai.RateLimitError, match="tokens per minute"):
        _ask(gateway, key, MODELS[provider], RUSSIAN, max_tokens=MAX_TOKENS)
    assert _counts(provider, "failed") == before + 1
    assert emulator.control.stats()["requests_by_fault"].get("http_500") == 1


def test_a_counter_that_does_not_answer_in_time_leaves_the_decision_to_the_estimate(
    gateway: str,
    make_key: Callable[..., CreatedKey],
    counters: dict[str, Callable[[str], int]],
    emulators: tuple[RunningEmulator, RunningEmulator],
    settings: Any,
) -> None:
    settings.XROUTER_TOKEN_COUNT_TIMEOUT = 0.3
    real = counters["yandexgpt"](RUSSIAN)
    key = make_key(tpm_limit=real + MAX_TOKENS)
    emulators[1].control.set_config(fault="timeout", fault_count=1, timeout_s=5)
    before = _counts("yandexgpt", "failed")
    with pytest.raises(openai.RateLimitError):
        _ask(gateway, key, MODELS["yandexgpt"], RUSSIAN, max_tokens=MAX_TOKENS)
    assert _counts("yandexgpt", "failed") == before + 1


@pytest.mark.parametrize("provider", ["gigachat", "yandexgpt"])
def test_a_repeated_prompt_is_counted_once(
    gateway: str,
    make_key: Callable[..., CreatedKey],
    counters: dict[str, Callable[[str], int]],
    emulators: tuple[RunningEmulator, RunningEmulator],
    provider: str,
) -> None:
    real = counters[provider](RUSSIAN)
    before = _count_calls(emulators, provider)
    for _ in range(2):
        key = make_key(tpm_limit=real + MAX_TOKENS)
        _ask(gateway, key, MODELS[provider], RUSSIAN, max_tokens=MAX_TOKENS)
    assert _count_calls(emulators, provider) == before + 1


@pytest.mark.parametrize(
    ("provider", "model"), [("gigachat", "gigachat/small"), ("yandexgpt", "yandex/small")]
)
def test_the_context_length_is_decided_by_the_real_count_inside_the_bound(
    gateway: str,
    api_key: CreatedKey,
    counters: dict[str, Callable[[str], int]],
    provider: str,
    model: str,
) -> None:
    """Context 80: a prompt estimated above it but counted below is served; one above is not."""
    fits = RUSSIAN[:200]
    assert estimate_prompt_tokens([fits]) + MAX_TOKENS > 80
    assert counters[provider](fits) + MAX_TOKENS <= 80
    assert _ask(gateway, api_key, model, fits, max_tokens=MAX_TOKENS).choices
    too_long = RUSSIAN * 2
    with pytest.raises(openai.BadRequestError) as refused:
        _ask(gateway, api_key, model, too_long, max_tokens=MAX_TOKENS)
    assert refused.value.code == "context_length_exceeded"
    assert refused.value.param == "messages"
    assert "maximum context length is 80 tokens" in refused.value.message
