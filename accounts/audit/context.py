"""The request an audited change is made in, for the actor and client address.

Services record audit events deep below the views that know the request;
:class:`AuditContextMiddleware` keeps the current request in a context
variable so :func:`accounts.audit.services.audit_record` can read the user
(or management key) and the client address without every service growing
a ``request`` argument. Outside a request (management commands, Celery
tasks) there is none and events are recorded as made by the system.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

from django.http import HttpRequest, HttpResponse

_current: ContextVar[HttpRequest | None] = ContextVar("audit_request", default=None)


def current_request() -> HttpRequest | None:
    """Return the request being served in this context, or None."""
    return _current.get()


class AuditContextMiddleware:
    """Make the request being served visible to :func:`current_request`."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _current.set(request)
        try:
            return self.get_response(request)
        finally:
            _current.reset(token)
