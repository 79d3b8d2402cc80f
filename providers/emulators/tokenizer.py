"""A length model of GigaChat's and YandexGPT's tokenizers, for the emulators.

The real tokenizers are vocabularies the emulators cannot ship, so their
counting endpoints (GigaChat ``/tokens/count``, Yandex ``tokenize`` and
``tokenizeCompletion``) use this model of what the providers document:

- GigaChat: "on average 3-4 characters per token, spaces, punctuation and
  special characters included" (developers.sber.ru, "Подсчет токенов");
- YandexGPT: a tokenizer "tailored to Russian-language texts to achieve a
  higher average number of characters per token"; its documented example is
  a 497-character Russian prompt of 86 tokens on YandexGPT Pro, 5.8
  characters per token (yandex.cloud, AI Studio "Tokens");
- Russian takes about 1.45 times the tokens of the same content in English
  (issue 16, from the providers' counters).

The text is cut into pieces the way SentencePiece and byte-level BPE
pre-tokenise (a word with the space before it, a run of digits, a run of
punctuation, a run of white space) and each piece costs tokens by its
length and script. ``docs/providers.md`` gives the numbers this yields on
``tests/providers/token_corpus/``. The emulators' usage fields still count
words, as they always did; only the counting endpoints use this model.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = ["GIGACHAT", "YANDEXGPT", "TokenizerModel"]

_PIECES = re.compile(r" ?[^\W\d_]+| ?\d+| ?[^\w\s]+|\s+")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")


@dataclass(frozen=True, slots=True)
class TokenizerModel:
    """Letters per token for each script; the rest is shared.

    ``cyrillic`` and ``latin`` are the letters one token covers in a word
    of that script; digits go three to a token; ASCII punctuation two to a
    token; other symbols (emoji, CJK) two tokens a character, as byte
    fallback does; a newline is a token, other white space four to one.
    """

    cyrillic: float
    latin: float

    def pieces(self, text: str) -> list[str]:
        """Return the pre-tokenised pieces of ``text``."""
        return _PIECES.findall(text)

    def piece_tokens(self, piece: str) -> int:
        """Return how many tokens one piece costs."""
        body = piece.lstrip(" ") if not piece.isspace() else piece
        if not body:
            return 1
        if body.isspace():
            newlines = body.count("\n")
            rest = len(body) - newlines
            return newlines + math.ceil(rest / 4)
        if body.isdigit():
            return math.ceil(len(body) / 3)
        if body[0].isalpha():
            size = self.cyrillic if _CYRILLIC.match(body) else self.latin
            return math.ceil(len(body) / size)
        ascii_part = sum(1 for ch in body if ch.isascii())
        return math.ceil(ascii_part / 2) + 2 * (len(body) - ascii_part)

    def count(self, text: str) -> int:
        """Return the tokens of ``text``."""
        return sum(self.piece_tokens(piece) for piece in self.pieces(text))


#: GigaChat: Russian about 3.1 characters per token, English about 4.6.
GIGACHAT = TokenizerModel(cyrillic=3.8, latin=7.0)
#: YandexGPT: Russian about 5.8 characters per token as documented; its
#: English is not documented in a source we could read (uncertain).
YANDEXGPT = TokenizerModel(cyrillic=12.0, latin=5.0)
