"""One JSON error shape for the management API, the same as ``/v1/``.

DRF's exceptions become ``{"error": {"message", "type", "code", "param"}}``
(:class:`xrouter_site.errors.XRouterError`'s shape), so a client parses one
dialect across both APIs. Validation errors report the first failing field
in ``param``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from xrouter_site.errors import ErrorCode, error_body

logger = logging.getLogger(__name__)

# DRF's own error codes mapped onto ours; anything else passes through.
_CODES: dict[str, str] = {
    "required": ErrorCode.MISSING_PARAMETER,
    "null": ErrorCode.INVALID_VALUE,
    "blank": ErrorCode.INVALID_VALUE,
    "invalid": ErrorCode.INVALID_VALUE,
    "not_a_list": ErrorCode.INVALID_TYPE,
    "not_a_dict": ErrorCode.INVALID_TYPE,
    "parse_error": ErrorCode.INVALID_JSON,
    "not_authenticated": ErrorCode.INVALID_API_KEY,
    "authentication_failed": ErrorCode.INVALID_API_KEY,
    "method_not_allowed": ErrorCode.METHOD_NOT_ALLOWED,
    "not_found": ErrorCode.NOT_FOUND,
    "unsupported_media_type": ErrorCode.UNSUPPORTED_MEDIA_TYPE,
}


def _first_error(detail: Any, path: str = "") -> tuple[str | None, exceptions.ErrorDetail | str]:
    """Return (dotted field path, first message) of a nested DRF error detail."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            field = "" if key == "non_field_errors" else str(key)
            return _first_error(value, f"{path}.{field}".strip(".") if field else path)
    if isinstance(detail, list) and detail:
        first = detail[0]
        if isinstance(first, dict | list):
            return _first_error(first, f"{path}.0" if path else "0")
        return path or None, first
    return path or None, str(detail)


# Refusals the OpenAPI schema cannot express (an expiry in the past, a model
# id the catalog does not list): 422, so 400 always means "not what the
# schema says" and schema-valid requests never get it (keys.api_schema).
SEMANTIC_CODES = frozenset({"in_past", "model_not_found"})


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """Render ``exc`` as the shared error object (DRF ``EXCEPTION_HANDLER``)."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        request = context.get("request")
        logger.exception(
            "unhandled error in the management API",
            extra={"path": getattr(request, "path", "")},
        )
        set_rollback()
        return Response(
            error_body(
                "The server had an error while processing your request.",
                code=ErrorCode.INTERNAL_ERROR,
                type_="api_error",
            ),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))  # type: ignore[attr-defined]

    param: str | None = None
    if isinstance(exc, exceptions.ValidationError):
        param, first = _first_error(exc.detail)
        message = f"{param}: {first}" if param else str(first)
        raw_code = getattr(first, "code", None) or "invalid"
    else:
        message = str(exc.detail)
        raw_code = exc.default_code
        if isinstance(exc.detail, dict | list):
            _param, first = _first_error(exc.detail)
            message = str(first)
    code = str(_CODES.get(str(raw_code), raw_code))
    status_code = exc.status_code
    if isinstance(exc, exceptions.ValidationError) and str(raw_code) in SEMANTIC_CODES:
        # Well-formed by the schema, refused on meaning: 422, not 400.
        status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    if exc.status_code >= 500:
        type_ = "api_error"
    else:
        type_ = "invalid_request_error"
    set_rollback()
    return Response(
        error_body(message, code=code, param=param, type_=type_),
        status=status_code,
        headers=headers,
    )


@csrf_exempt  # it changes nothing; without this a PATCH gets CSRF's 403 page
def api_not_found(request: HttpRequest, unmatched: str = "") -> JsonResponse:
    """Answer unknown ``/api/v1/`` paths with the JSON 404, not an HTML page."""
    return JsonResponse(
        error_body(f"Unknown API path {request.path}.", code=ErrorCode.NOT_FOUND), status=404
    )
