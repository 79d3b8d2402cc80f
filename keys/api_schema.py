"""OpenAPI post-processing: the error answers every operation can give.

drf-spectacular documents the success response of each view; the errors
come from shared code (authentication, the parsers, validation, the 404 of
another team's id) and were undocumented, so schemathesis found 16 kinds
of "undocumented status" (issue 15, "The API contract"). This hook adds
them in one place, all with the ``{"error": {...}}`` body of
``keys.api_errors``, and closes request bodies (``additionalProperties:
false``): the input serializers refuse unknown fields, and the schema now
says so.
"""

from __future__ import annotations

from typing import Any

ERROR_COMPONENT = "Error"
_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": "string", "nullable": True},
                "code": {"type": "string", "nullable": True},
            },
        }
    },
}
_DESCRIPTIONS = {
    "400": "Malformed JSON, a wrong type or value, or an unknown field (`param` names it).",
    "401": "Missing, malformed, unknown, revoked or expired credential.",
    "403": "The caller's role or the token's scope does not allow this.",
    "404": "No such resource in the caller's team (another team's id included).",
    "409": "The request conflicts with the resource's state.",
    "415": "The body is not JSON.",
    "422": "Valid by the schema but refused: an expiry in the past, a model id not in the catalog.",
}
# Statuses per method, on top of what the view documents itself.
_BY_METHOD = {
    "get": ("400", "401", "403", "404"),
    "post": ("400", "401", "403", "404", "415", "422"),
    "patch": ("400", "401", "403", "404", "409", "415", "422"),
    "delete": ("401", "403", "404", "409"),
}


def add_error_responses(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular POSTPROCESSING_HOOKS entry: document errors, close bodies."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas[ERROR_COMPONENT] = _ERROR_SCHEMA
    ref = {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}
    for methods in result.get("paths", {}).values():
        for method, operation in methods.items():
            responses = operation.setdefault("responses", {})
            for status in _BY_METHOD.get(method, ()):
                responses.setdefault(
                    status,
                    {
                        "description": _DESCRIPTIONS[status],
                        "content": {"application/json": {"schema": ref}},
                    },
                )
    for name, schema in schemas.items():
        if name.endswith("Request") and schema.get("type") == "object":
            schema["additionalProperties"] = False
    return result
