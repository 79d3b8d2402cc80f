"""How an upstream failure is told to routing: :class:`ProviderError`.

Adapters raise nothing else; routing retries or falls back on ``retryable``
alone. :func:`error_from_status` holds the status rules every adapter shares
and :func:`bad_response` the one error for an upstream answer in a shape we
cannot read. This module is a leaf of ``providers``: it imports no adapter.
"""

from __future__ import annotations

from typing import Any

from xrouter_site.errors import ErrorCode
from xrouter_site.logging import redact


class ProviderError(Exception):
    """An upstream call failed.

    ``retryable`` says whether another attempt (here or at another
    deployment) may succeed: connection errors, timeouts, 429 and 5xx are
    retryable; errors caused by the request itself (400, 404, 413, 422) and
    bad credentials (401, 403) are not. ``status`` is the HTTP status the
    gateway should answer with; ``retry_after`` is the upstream's hint in
    seconds. ``message`` must be safe to show a client: adapters strip
    tokens and upstream internals from it.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        retryable: bool,
        status: int = 502,
        upstream_status: int | None = None,
        code: str = ErrorCode.UPSTREAM_ERROR,
        retry_after: float | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.retryable = retryable
        self.status = status
        self.upstream_status = upstream_status
        self.code = code
        self.retry_after = retry_after
        self.param = param

    def __repr__(self) -> str:
        return (
            f"ProviderError({self.message!r}, provider={self.provider!r}, "
            f"retryable={self.retryable}, status={self.status}, "
            f"upstream_status={self.upstream_status})"
        )


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a ``Retry-After`` header given in seconds; dates are ignored."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def sanitize_upstream_message(message: Any, limit: int = 300) -> str:
    """Return an upstream error text that is safe to log and show a client.

    Credentials that a provider may echo back are masked and the text is
    cut short, so a verbose upstream cannot leak internals through us.
    """
    text = str(message or "").strip().replace("\n", " ")
    text = redact(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_from_status(
    provider: str,
    upstream_status: int,
    message: str,
    *,
    retry_after: float | None = None,
    param: str | None = None,
) -> ProviderError:
    """Map an upstream HTTP error status to a :class:`ProviderError`.

    The rules every adapter shares: the request's own faults (400, 404,
    413, 422) pass through and are not retried; bad provider credentials
    (401, 403) are the operator's problem, shown to the client as 502 and
    not retried; 408, 429 and 5xx are retryable.
    """
    text = sanitize_upstream_message(message) or f"{provider} returned HTTP {upstream_status}"
    common: dict[str, Any] = {
        "provider": provider,
        "upstream_status": upstream_status,
        "retry_after": retry_after,
        "param": param,
    }
    if upstream_status in (400, 422):
        return ProviderError(
            text, retryable=False, status=400, code=ErrorCode.INVALID_REQUEST, **common
        )
    if upstream_status == 413:
        return ProviderError(
            text, retryable=False, status=413, code=ErrorCode.REQUEST_TOO_LARGE, **common
        )
    if upstream_status == 404:
        return ProviderError(
            f"{provider} does not know this model or path: {text}",
            retryable=False,
            status=404,
            code=ErrorCode.MODEL_NOT_FOUND,
            **common,
        )
    if upstream_status in (401, 403):
        return ProviderError(
            f"{provider} rejected the gateway's credentials",
            retryable=False,
            status=502,
            code=ErrorCode.UPSTREAM_AUTH_FAILED,
            **common,
        )
    if upstream_status == 402:
        return ProviderError(
            f"{provider} refused the request: the provider account is out of quota",
            retryable=True,
            status=502,
            code=ErrorCode.UPSTREAM_PAYMENT_REQUIRED,
            **common,
        )
    if upstream_status == 429:
        return ProviderError(
            f"{provider} is rate limiting requests: {text}",
            retryable=True,
            status=429,
            code=ErrorCode.UPSTREAM_RATE_LIMITED,
            **common,
        )
    if upstream_status == 408 or upstream_status == 504:
        return ProviderError(
            text, retryable=True, status=504, code=ErrorCode.UPSTREAM_TIMEOUT, **common
        )
    if upstream_status == 503:
        return ProviderError(
            text, retryable=True, status=503, code=ErrorCode.UPSTREAM_UNAVAILABLE, **common
        )
    return ProviderError(
        text,
        retryable=upstream_status >= 500 or upstream_status == 409,
        status=502,
        code=ErrorCode.UPSTREAM_ERROR,
        **common,
    )


def bad_response(
    provider: str,
    message: str,
    *,
    retryable: bool = True,
    upstream_status: int | None = None,
) -> ProviderError:
    """Return the error for an upstream answer that cannot be read.

    A malformed body is usually a glitch of one upstream instance, so it is
    retryable unless the caller knows better (a stream that already sent
    bytes, a line over the size cap). The client sees 502.
    """
    return ProviderError(
        message,
        provider=provider,
        retryable=retryable,
        status=502,
        upstream_status=upstream_status,
        code=ErrorCode.UPSTREAM_BAD_RESPONSE,
    )
