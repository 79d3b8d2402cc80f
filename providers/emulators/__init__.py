"""Wire-level fake LLM providers for tests, benchmarks and the demo run.

This package never imports Django, and importing it does not import gevent
either: kinds are resolved lazily, so test code can use the registry and
:mod:`providers.emulators.testing` without touching the server stack.  See
:mod:`providers.emulators.base` for the framework and the fault contract.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from providers.emulators.base import Emulator

__all__ = ["EMULATORS", "available_kinds", "load_emulator_class"]

#: kind -> "module" or "module:attribute".  Without an attribute the module's
#: ``EMULATOR`` is used.  Kinds whose module does not exist yet are listed so
#: a new emulator only has to add its module (see ``base.py``).
EMULATORS: dict[str, str] = {
    "openai": "providers.emulators.openai:OpenAIEmulator",
    "gigachat": "providers.emulators.gigachat",
    "yandexgpt": "providers.emulators.yandexgpt",
}


def _split(target: str) -> tuple[str, str]:
    module, _, attr = target.partition(":")
    return module, attr or "EMULATOR"


def available_kinds() -> list[str]:
    """Return the registered kinds whose module is present (without importing it)."""
    kinds = []
    for kind, target in EMULATORS.items():
        module, _ = _split(target)
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            kinds.append(kind)
    return kinds


def load_emulator_class(kind: str) -> type[Emulator]:
    """Import and return the :class:`~providers.emulators.base.Emulator` for ``kind``."""
    try:
        target = EMULATORS[kind]
    except KeyError:
        raise LookupError(
            f"unknown emulator kind {kind!r}; known: {', '.join(sorted(EMULATORS))}"
        ) from None
    module_name, attr = _split(target)
    module = importlib.import_module(module_name)
    try:
        cls: type[Emulator] = getattr(module, attr)
    except AttributeError:
        raise LookupError(f"{module_name} does not define {attr}") from None
    return cls
