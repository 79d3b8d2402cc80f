"""One error type for the gateway API and one place that renders it.

Every error a client of ``/v1/`` sees has OpenAI's shape::

    {"error": {"message": "...", "type": "...", "param": null, "code": "..."}}

Raise a subclass of :class:`XRouterError` anywhere below a view; the gateway
turns it into a response with :func:`error_response`. Subclasses override only
what differs::

    class ModelNotFound(XRouterError):
        http_status = 404
        type = "invalid_request_error"
        code = ErrorCode.MODEL_NOT_FOUND
"""

from __future__ import annotations

import enum
from typing import Any

import orjson
from django.http import HttpResponse


class ErrorCode(enum.StrEnum):
    """Stable error codes the API returns in ``error.code``."""

    INVALID_API_KEY = "invalid_api_key"
    INVALID_JSON = "invalid_json"
    INVALID_REQUEST = "invalid_request"
    MISSING_PARAMETER = "missing_required_parameter"
    INVALID_TYPE = "invalid_type"
    INVALID_VALUE = "invalid_value"
    CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
    MODEL_NOT_FOUND = "model_not_found"
    MODEL_NOT_ALLOWED = "model_not_allowed"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    REQUEST_TOO_LARGE = "request_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    UNSUPPORTED_OPERATION = "unsupported_operation"
    NO_MATCHING_DEPLOYMENT = "no_matching_deployment"
    UPSTREAM_ERROR = "upstream_error"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_RATE_LIMITED = "upstream_rate_limited"
    CONTENT_FILTER = "content_filter"
    # Data handling (routing/residency.py, routing/pii/).
    DATA_POLICY_VIOLATION = "data_policy_violation"
    PII_DETECTED = "pii_detected"
    SERVICE_UNAVAILABLE = "service_unavailable"
    SERVER_OVERLOADED = "server_overloaded"
    INTERNAL_ERROR = "internal_error"
    ALL_UPSTREAMS_FAILED = "all_upstreams_failed"
    UPSTREAM_BAD_RESPONSE = "upstream_bad_response"
    UPSTREAM_AUTH_FAILED = "upstream_auth_failed"
    UPSTREAM_AUTH_PENDING = "upstream_auth_pending"
    UPSTREAM_MISCONFIGURED = "upstream_misconfigured"
    UPSTREAM_PAYMENT_REQUIRED = "upstream_payment_required"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    UPSTREAM_UNREACHABLE = "upstream_unreachable"
    UPSTREAM_STREAM_CUT = "upstream_stream_cut"
    NO_AVAILABLE_DEPLOYMENT = "no_available_deployment"
    BREAKER_OPEN = "breaker_open"
    # An attempt the data policy skipped (routing/residency.py).
    DATA_POLICY = "data_policy"
    # Refusals of the gateway's own limits (routing.limits).
    RATE_LIMIT_REQUESTS = "rate_limit_requests"
    RATE_LIMIT_TOKENS = "rate_limit_tokens"
    CONCURRENCY_LIMIT = "concurrency_limit"
    INSUFFICIENT_BUDGET = "insufficient_budget"
    # Recorded (status 499), never sent: the client was gone.
    CLIENT_DISCONNECTED = "client_disconnected"


class XRouterError(Exception):
    """Base error with an HTTP status and the OpenAI error fields."""

    http_status: int = 500
    type: str = "api_error"
    code: ErrorCode | str = ErrorCode.INTERNAL_ERROR
    default_message: str = "The server had an error while processing your request."

    def __init__(
        self,
        message: str | None = None,
        *,
        param: str | None = None,
        code: ErrorCode | str | None = None,
        http_status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.param = param
        if code is not None:
            self.code = code
        if http_status is not None:
            self.http_status = http_status
        self.headers = headers or {}
        super().__init__(self.message)

    def as_dict(self) -> dict[str, Any]:
        return error_body(self.message, code=str(self.code), type_=self.type, param=self.param)


def error_body(
    message: str, *, code: str, param: str | None = None, type_: str = "invalid_request_error"
) -> dict[str, Any]:
    """Return OpenAI's error object; the one place that builds it.

    ``/v1/``, the REST APIs, the key exchange and the SSE stream's terminal
    error event all send this shape, so SDKs raise their usual exceptions.
    """
    return {"error": {"message": message, "type": type_, "param": param, "code": str(code)}}


class InvalidRequest(XRouterError):
    http_status = 400
    type = "invalid_request_error"
    code = ErrorCode.INVALID_REQUEST
    default_message = "The request is invalid."


class AuthenticationFailed(XRouterError):
    """One body for every authentication failure, whatever the cause.

    Unknown, malformed, revoked and expired keys look the same to the client
    so the response is no oracle; the cause is logged server-side.
    """

    http_status = 401
    type = "invalid_request_error"
    code = ErrorCode.INVALID_API_KEY
    default_message = "Invalid API key. Pass a valid key as 'Authorization: Bearer <key>'."

    def __init__(self, reason: str = "invalid") -> None:
        super().__init__(headers={"WWW-Authenticate": 'Bearer realm="xrouter"'})
        self.reason = reason


class PermissionDenied(XRouterError):
    http_status = 403
    type = "invalid_request_error"
    code = ErrorCode.MODEL_NOT_ALLOWED
    default_message = "This key is not allowed to do that."


class NotFound(XRouterError):
    http_status = 404
    type = "invalid_request_error"
    code = ErrorCode.NOT_FOUND
    default_message = "Unknown URL."


class ModelNotFound(NotFound):
    code = ErrorCode.MODEL_NOT_FOUND


class MethodNotAllowed(XRouterError):
    http_status = 405
    type = "invalid_request_error"
    code = ErrorCode.METHOD_NOT_ALLOWED

    def __init__(self, method: str, allowed: tuple[str, ...]) -> None:
        super().__init__(
            f"Method {method} is not allowed here; use {', '.join(allowed)}.",
            headers={"Allow": ", ".join(allowed)},
        )


class RequestTooLarge(XRouterError):
    http_status = 413
    type = "invalid_request_error"
    code = ErrorCode.REQUEST_TOO_LARGE


class UnsupportedMediaType(XRouterError):
    http_status = 415
    type = "invalid_request_error"
    code = ErrorCode.UNSUPPORTED_MEDIA_TYPE
    default_message = "Send the request body as JSON (Content-Type: application/json)."


class RateLimited(XRouterError):
    """A per-minute or concurrency limit of the key, team or model refused."""

    http_status = 429
    type = "rate_limit_error"
    code = ErrorCode.RATE_LIMIT_REQUESTS


class BudgetExhausted(XRouterError):
    """The key's or team's budget for the period is spent."""

    http_status = 402
    type = "api_error"
    code = ErrorCode.INSUFFICIENT_BUDGET


class AllUpstreamsFailed(XRouterError):
    """More than one upstream was tried and every one failed."""

    http_status = 503
    type = "api_error"
    code = ErrorCode.ALL_UPSTREAMS_FAILED


class ServiceUnavailable(XRouterError):
    http_status = 503
    type = "api_error"
    code = ErrorCode.SERVICE_UNAVAILABLE
    default_message = "The service is temporarily unavailable. Retry later."


def json_response(
    payload: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> HttpResponse:
    """Serialise ``payload`` with orjson into an ``application/json`` response."""
    response = HttpResponse(orjson.dumps(payload), status=status, content_type="application/json")
    if headers:
        for name, value in headers.items():
            response[name] = value
    return response


def error_response(error: XRouterError) -> HttpResponse:
    """Render ``error`` as OpenAI's error object with its status and headers."""
    return json_response(error.as_dict(), status=error.http_status, headers=error.headers)
