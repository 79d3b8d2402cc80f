"""How many tokens a prompt has: the estimate, its error bound, the real count.

Admission reserves the estimate (one token per three characters plus four a
message). The estimate is wrong by a bounded factor, measured on
``tests/providers/token_corpus/`` against the emulators' models of the
providers' tokenizers and argued from the providers' documentation in
``docs/providers.md`` ("Token counting"):

    ESTIMATE_LOW * (estimate - 4 * messages) <= real <= ESTIMATE_HIGH * estimate

When a limit's threshold falls inside that interval, the estimate cannot
decide, and :class:`PromptSize` asks the provider's counter (once; the
gateway caches it) so the real count decides instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

#: Per message: the role markup a chat template adds around each message.
MESSAGE_OVERHEAD = 4
#: Real / estimate on the corpus is 0.44 (Russian prose on YandexGPT) to
#: 1.40 (dense code; Russian with numbers 1.36): the bound keeps a margin.
ESTIMATE_LOW = 0.4
ESTIMATE_HIGH = 1.5


def estimate_prompt_tokens(texts: list[str]) -> int:
    """Estimate tokens before the call: a generous 1 token per 3 characters.

    Only the limiter's reservation uses this; the real count replaces it.
    """
    return sum(math.ceil(len(text) / 3) + MESSAGE_OVERHEAD for text in texts)


@dataclass(slots=True)
class PromptSize:
    """A prompt's estimate and, on demand, the provider's count of it.

    ``counter`` returns the real count, or ``None`` when the provider
    cannot say (no counter, an error, the time ran out): then the estimate
    decides. It is called at most once.
    """

    estimate: int
    messages: int = 1
    counter: Callable[[], int | None] | None = None
    real: int | None = None
    _asked: bool = field(default=False, repr=False)

    @classmethod
    def of(cls, texts: list[str], counter: Callable[[], int | None] | None = None) -> PromptSize:
        return cls(estimate_prompt_tokens(texts), messages=len(texts), counter=counter)

    @property
    def low(self) -> int:
        """The fewest tokens the prompt can have, by the estimate's bound."""
        if self.real is not None:
            return self.real
        return math.floor(ESTIMATE_LOW * max(self.estimate - MESSAGE_OVERHEAD * self.messages, 0))

    @property
    def high(self) -> int:
        """The most tokens the prompt can have, by the estimate's bound."""
        if self.real is not None:
            return self.real
        return math.ceil(ESTIMATE_HIGH * self.estimate)

    @property
    def tokens(self) -> int:
        """What to reserve and decide on: the real count once known."""
        return self.real if self.real is not None else self.estimate

    def count(self) -> int | None:
        """Ask the provider once; return the real count or ``None``."""
        if not self._asked and self.counter is not None:
            self._asked = True
            self.real = self.counter()
        return self.real

    def decides(self, threshold: int) -> bool:
        """Whether the estimate alone can say if the prompt fits ``threshold``."""
        return self.real is not None or not (self.low <= threshold < self.high)
