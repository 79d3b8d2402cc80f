"""Provider kinds, resolved to adapter classes only when first used.

Keeping dotted paths here (not imports) means a deployment without, say,
Yandex configured never imports the Yandex adapter or its dependencies.
"""

from __future__ import annotations

from functools import cache

from django.utils.module_loading import import_string

from providers.base import Provider

PROVIDER_KINDS: dict[str, str] = {
    "openai": "providers.openai_compat.OpenAICompatibleProvider",
    "gigachat": "providers.gigachat.GigaChatProvider",
    "yandexgpt": "providers.yandexgpt.YandexGPTProvider",
}


@cache
def provider_class(kind: str) -> type[Provider]:
    """Return the adapter class for ``kind``; KeyError if the kind is unknown."""
    return import_string(PROVIDER_KINDS[kind])  # type: ignore[no-any-return]
