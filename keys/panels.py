"""Sections other apps add to a key's dashboard page (its usage, its limits' state).

keys sits below routing and may not import it, so the routing app passes
its sections in: it registers a function at start-up (``RoutingConfig.ready``)
that returns extra template context for a key, and :func:`key_panel_context`
merges what every registered function returns.

Usage::

    def usage_panel(request: HttpRequest, api_key: ApiKey) -> dict[str, Any]:
        return {"key_usage": ...}

    key_panel_register(usage_panel)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest

from keys.models import ApiKey

KeyPanel = Callable[[HttpRequest, ApiKey], dict[str, Any]]

_panels: list[KeyPanel] = []


def key_panel_register(panel: KeyPanel) -> None:
    """Add ``panel`` to every key page (registering one twice adds it once)."""
    if panel not in _panels:
        _panels.append(panel)


def key_panel_context(request: HttpRequest, api_key: ApiKey) -> dict[str, Any]:
    """Return the context every registered panel adds for ``api_key``."""
    context: dict[str, Any] = {}
    for panel in _panels:
        context.update(panel(request, api_key))
    return context
