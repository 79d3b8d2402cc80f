"""The provider's own token count of a prompt, for the decisions an estimate cannot take.

:func:`prompt_counter` returns the ``counter`` of a
:class:`~routing.limits.prompt_size.PromptSize`: admission calls it only when
a limit's threshold lies inside the estimate's error bound, so the common
request far from every limit never pays for it. The count is asked of the
deployment that will be tried first (never one the data policy refuses),
for the prompt as it will be sent (after the PII guard), within
``XROUTER_TOKEN_COUNT_TIMEOUT`` seconds, and cached by a digest of provider,
model and messages for ``XROUTER_TOKEN_COUNT_CACHE_SECONDS``. Any failure
returns ``None``: the estimate decides, and
``xrouter_token_counts_total{outcome="failed"}`` says so.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable

import orjson
from django.conf import settings
from django.core.cache import cache

from providers.base import Message
from providers.errors import ProviderError
from providers.http import deadline_scope
from routing import metrics
from routing.router import Candidate
from routing.table import RoutingTable

logger = logging.getLogger(__name__)

_CACHE_PREFIX = "tokcount:v1:"


def prompt_counter(
    table: RoutingTable, options: list[Candidate], messages: list[Message]
) -> Callable[[], int | None]:
    """Return a function that counts ``messages`` on the first servable option."""

    def count() -> int | None:
        candidate = next((option for option in options if not option.refused), None)
        if candidate is None:
            return None
        provider = candidate.deployment.provider
        model = candidate.deployment.upstream
        key = _CACHE_PREFIX + _digest(provider, model, messages)
        cached = cache.get(key)
        if isinstance(cached, int):
            _count_metric(provider, "cached")
            return cached
        try:
            adapter = table.adapter(provider)
            with deadline_scope(time.monotonic() + settings.XROUTER_TOKEN_COUNT_TIMEOUT):
                tokens = int(adapter.count_prompt_tokens(model, messages))
        except NotImplementedError:
            _count_metric(provider, "unsupported")
            return None
        except (ProviderError, KeyError, TypeError, ValueError) as exc:
            logger.warning(
                "token count failed; the estimate decides",
                extra={"provider": provider, "model": model, "error": str(exc)[:200]},
            )
            _count_metric(provider, "failed")
            return None
        cache.set(key, tokens, settings.XROUTER_TOKEN_COUNT_CACHE_SECONDS)
        _count_metric(provider, "counted")
        return tokens

    return count


def _digest(provider: str, model: str, messages: list[Message]) -> str:
    """Return a digest of what is counted; the cache never holds the prompt."""
    data = [
        [m.role, m.name, m.content, [(c.name, c.arguments) for c in m.tool_calls]] for m in messages
    ]
    return hashlib.sha256(orjson.dumps([provider, model, data])).hexdigest()


def _count_metric(provider: str, outcome: str) -> None:
    try:
        metrics.TOKEN_COUNTS.labels(provider, outcome).inc()
    except Exception:
        logger.debug("metrics failed", exc_info=True)
