"""``GET /api/v1/generation?id=<request id>``: one request's usage record.

OpenRouter's endpoint of the same name answers to the inference key that
made the request, so this one accepts more than the management API does:

- a **standard key** sees only requests made with that very key;
- a **management key**, a **dashboard session** or an OAuth token with
  ``usage:read`` sees any request of its team (the token: of the team the
  user consented for).

Anything else (another key's or team's request, an id not yet written or
unknown) answers the same 404, so ids of others do not leak. Records are
written off the hot path, so a request made a moment ago may still 404;
clients retry, as with OpenRouter.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.oauth.api_auth import USAGE_READ, OAuthAccess, OAuthTokenAuthentication
from accounts.selectors import membership_current
from keys.api import ManagementApiView
from keys.authentication import AnyKeyAuthentication
from keys.models import ApiKey
from keys.principal import KeyPrincipal
from routing.models import UsageRecord
from routing.usage.selectors import usage_record_get


class GenerationQuerySerializer(serializers.Serializer[Any]):
    id = serializers.RegexField(r"^[A-Za-z0-9._:\-]+$", max_length=128, help_text="The request id.")


def generation_dict(record: UsageRecord) -> dict[str, Any]:
    """Return ``record`` in OpenRouter's generation shape plus XRouter fields.

    Costs are in RUB (``currency``); ``latency`` is the time to the first
    token of a stream, else the full time, as OpenRouter reports it.
    """
    cost = float(record.cost_rub)
    return {
        "id": record.request_id,
        "created_at": record.created_at.isoformat(),
        "model": record.served_model or record.requested_model,
        "requested_model": record.requested_model,
        "model_version": record.model_version or None,
        "provider_name": record.provider or None,
        "origin": "",
        "app_id": record.oauth_app or None,
        "api_key": record.key.public_id if record.key else None,
        "endpoint": record.endpoint,
        "total_cost": cost,
        "usage": cost,
        "currency": "RUB",
        "is_byok": False,
        "tokens_prompt": record.prompt_tokens,
        "tokens_completion": record.completion_tokens,
        "native_tokens_prompt": record.prompt_tokens,
        "native_tokens_completion": record.completion_tokens,
        "native_tokens_cached": record.cached_tokens,
        "streamed": record.stream,
        "cancelled": record.stream and record.stream_complete is False,
        "latency": record.ttft_ms if record.ttft_ms is not None else record.latency_ms,
        "generation_time": record.latency_ms,
        "status": record.status,
        "error_code": record.error_code or None,
        "finish_reason": record.finish_reason or None,
        "attempts": [
            {
                key: attempt.get(key)
                for key in ("model", "provider", "status", "error_code", "latency_ms")
            }
            for attempt in record.attempts
            if isinstance(attempt, dict)
        ],
    }


class GenerationApi(ManagementApiView):
    # OAuth first: it passes ``xr_`` keys on to AnyKeyAuthentication. A
    # token needs ``usage:read`` (OAuthScopePermission, inherited).
    authentication_classes = [OAuthTokenAuthentication, AnyKeyAuthentication, SessionAuthentication]
    oauth_read_scopes = (USAGE_READ,)
    oauth_write_scopes = ()

    @extend_schema(
        operation_id="generation_retrieve",
        summary="Usage record of one request (OpenRouter's /generation)",
        parameters=[GenerationQuerySerializer],
        responses=inline_serializer("GenerationEnvelope", fields={"data": serializers.DictField()}),
    )
    def get(self, request: Request) -> Response:
        query = GenerationQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        request_id: str = query.validated_data["id"]
        if isinstance(request.auth, KeyPrincipal):
            principal = request.auth
            key_id = principal.key_id if principal.kind == ApiKey.Kind.STANDARD else None
            record = usage_record_get(
                request_id=request_id, team_id=principal.team_id, key_id=key_id
            )
        elif isinstance(request.auth, OAuthAccess):
            # The team the user consented for, never the session's.
            record = usage_record_get(request_id=request_id, team_id=request.auth.team.pk)
        else:
            membership = membership_current(request._request)
            record = (
                usage_record_get(request_id=request_id, team_id=membership.team_id)
                if membership is not None
                else None
            )
        if record is None:
            raise exceptions.NotFound("No generation with this id.")
        return Response({"data": generation_dict(record)})
