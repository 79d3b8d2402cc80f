"""Middleware for the dashboard and management API (not /v1/)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def request_id_from(meta: dict[str, str]) -> str:
    """Return the client's ``X-Request-ID`` if it is sane, else a new one.

    A client value is echoed so traces join up across services; anything
    long or with odd characters is replaced, because it ends up in logs.
    """
    candidate = meta.get("HTTP_X_REQUEST_ID", "")
    if candidate and _SANE_REQUEST_ID.match(candidate):
        return candidate
    return uuid.uuid4().hex


class RequestIDMiddleware:
    """Attach ``request.request_id`` and echo it as ``X-Request-ID``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.request_id = request_id_from(request.META)  # type: ignore[attr-defined]
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id  # type: ignore[attr-defined]
        return response
