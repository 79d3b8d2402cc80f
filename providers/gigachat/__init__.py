"""Sber GigaChat provider: OAuth token handling, wire mapping and the adapter.

``providers.registry`` resolves kind ``gigachat`` to
:class:`providers.gigachat.GigaChatProvider`. The package is split because
the auth flow is its own concern: :mod:`.auth` (shared, single-flight
token), :mod:`.mapping` (OpenAI <-> GigaChat translation, no I/O) and
:mod:`.provider` (HTTP calls and error mapping).
"""

from __future__ import annotations

from providers.gigachat.auth import AccessToken, TokenManager
from providers.gigachat.provider import GigaChatProvider

__all__ = ["AccessToken", "GigaChatProvider", "TokenManager"]
