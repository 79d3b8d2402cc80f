"""The management REST API under ``/api/v1/``: keys and the current team.

Views are thin: validate with an input serializer, call a service or a
selector, serialise the output. Every key lookup is scoped to the caller's
team, so another team's id answers 404 exactly like an id that does not
exist. The shapes follow OpenRouter's key API: ``{"data": ...}`` envelopes,
``limit`` for the budget and the secret as ``key`` in the creation response
only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from accounts import roles
from accounts.audit.selectors import audit_event_list
from accounts.models import Membership, Team, User
from accounts.oauth.api_auth import (
    KEYS_READ,
    KEYS_WRITE,
    OAuthAccess,
    OAuthScopePermission,
    OAuthTokenAuthentication,
)
from accounts.selectors import membership_current
from accounts.services import team_data_handling_update
from keys import selectors, services
from keys.models import ApiKey
from keys.principal import KeyPrincipal
from keys.serializers import (
    AuditEventSerializer,
    AuditListSerializer,
    AuditQuerySerializer,
    DeletedSerializer,
    KeyCreatedSerializer,
    KeyCreateInputSerializer,
    KeyEnvelopeSerializer,
    KeyListQuerySerializer,
    KeyListSerializer,
    KeySerializer,
    KeyUpdateInputSerializer,
    TeamEnvelopeSerializer,
    TeamUpdateInputSerializer,
)

# API field name -> ApiKey field name, where they differ.
_FIELD_MAP = {"limit": "budget_rub"}


@dataclass(frozen=True)
class Caller:
    """Who is calling and for which team."""

    team: Team
    can_manage: bool
    user: User | None
    role: str | None


def caller_of(request: Request) -> Caller:
    """Return who is calling and for which team; 404 without a team."""
    if isinstance(request.auth, KeyPrincipal):
        team = Team.objects.filter(pk=request.auth.team_id).first()
        if team is None:  # deleted since the key was cached
            raise exceptions.AuthenticationFailed()
        return Caller(team=team, can_manage=True, user=None, role=None)
    if isinstance(request.auth, OAuthAccess):
        # The team the user consented for, never the session's current one.
        access = request.auth
        return Caller(
            team=access.team, can_manage=access.can_manage, user=access.user, role=access.role
        )
    membership: Membership | None = membership_current(request._request)
    if membership is None:
        raise exceptions.NotFound("You are not a member of any team yet.")
    return Caller(
        team=membership.team,
        can_manage=membership.can_manage,
        user=request.user,  # type: ignore[arg-type]
        role=membership.role,
    )


def _require_manager(caller: Caller, action: roles.Action = roles.Action.KEY_CHANGE) -> None:
    # A management key acts for the team (no role); people go by the matrix.
    if caller.user is not None and not roles.allows(caller.role, action):
        raise exceptions.PermissionDenied(str(roles.RoleDenied(action)))
    if not caller.can_manage:
        raise exceptions.PermissionDenied(str(roles.RoleDenied(action)))


def _drf_validation_error(exc: DjangoValidationError) -> exceptions.ValidationError:
    if hasattr(exc, "error_dict"):
        detail = {
            {v: k for k, v in _FIELD_MAP.items()}.get(field, field): messages
            for field, messages in exc.message_dict.items()
        }
        return exceptions.ValidationError(detail)
    return exceptions.ValidationError(exc.messages)


def _model_changes(data: dict[str, Any]) -> dict[str, Any]:
    return {_FIELD_MAP.get(name, name): value for name, value in data.items()}


class ManagementApiView(APIView):
    """Base view: JSON bodies only and responses that are never cached.

    OAuth access tokens are accepted here (accounts.oauth.api_auth): reads
    need ``keys:read`` or ``keys:write``, writes ``keys:write``. A subclass
    that serves something else overrides the two scope tuples.
    """

    parser_classes = [JSONParser]
    # OAuth first: it passes ``xr_`` keys on to the management-key class.
    authentication_classes = [
        OAuthTokenAuthentication,
        *api_settings.DEFAULT_AUTHENTICATION_CLASSES,
    ]
    permission_classes = [*api_settings.DEFAULT_PERMISSION_CLASSES, OAuthScopePermission]
    # Write implies read: a PATCH answers with the key anyway.
    oauth_read_scopes: tuple[str, ...] = (KEYS_READ, KEYS_WRITE)
    oauth_write_scopes: tuple[str, ...] = (KEYS_WRITE,)

    def finalize_response(
        self, request: Request, response: HttpResponse, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        response = super().finalize_response(request, response, *args, **kwargs)
        # Responses carry secrets (a new key) or team data: no shared caches.
        response["Cache-Control"] = "no-store"
        return response

    def _get_key(self, caller: Caller, public_id: Any) -> ApiKey:
        api_key = selectors.api_key_get(team=caller.team, public_id=public_id)
        # A deleted (revoked) key is gone from its URL, as after any DELETE;
        # GET /keys?status=revoked still lists it for the record.
        if api_key is None or api_key.is_revoked:
            raise exceptions.NotFound("No such key.")
        return api_key


def _refuse_self_lockout(request: Request, api_key: ApiKey) -> None:
    """A management key may not revoke or disable itself: the caller would lock itself out."""
    principal = request.auth
    if isinstance(principal, KeyPrincipal) and principal.key_id == api_key.pk:
        raise Conflict()


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = (
        "A management key cannot revoke or disable itself; use another key or the dashboard."
    )
    default_code = "conflict"


class KeyListCreateApi(ManagementApiView):
    @extend_schema(
        operation_id="keys_list",
        parameters=[KeyListQuerySerializer],
        responses=KeyListSerializer,
        summary="List the team's keys",
    )
    def get(self, request: Request) -> Response:
        caller = caller_of(request)
        query = KeyListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        keys = selectors.api_key_list(
            team=caller.team, search=params.get("search", ""), status=params.get("status", "")
        )
        offset, size = params["offset"], params["page_size"]
        page = list(keys[offset : offset + size])
        return Response(
            {
                "data": KeySerializer(page, many=True).data,
                "total": keys.count(),
                "offset": offset,
                "page_size": size,
            }
        )

    @extend_schema(
        operation_id="keys_create",
        request=KeyCreateInputSerializer,
        responses={201: KeyCreatedSerializer},
        summary="Create a key; the secret is in this response only",
    )
    def post(self, request: Request) -> Response:
        caller = caller_of(request)
        _require_manager(caller, roles.Action.KEY_CREATE)
        serializer = KeyCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            created = services.api_key_create(
                team=caller.team,
                created_by=caller.user,
                **_model_changes(serializer.validated_data),
            )
        except DjangoValidationError as exc:
            raise _drf_validation_error(exc) from None
        except roles.RoleDenied as exc:  # the role changed since _require_manager
            raise exceptions.PermissionDenied(str(exc)) from None
        return Response(
            {"data": KeySerializer(created.api_key).data, "key": created.plaintext},
            status=status.HTTP_201_CREATED,
        )


class KeyDetailApi(ManagementApiView):
    @extend_schema(operation_id="keys_retrieve", responses=KeyEnvelopeSerializer)
    def get(self, request: Request, public_id: Any) -> Response:
        api_key = self._get_key(caller_of(request), public_id)
        return Response({"data": KeySerializer(api_key).data})

    @extend_schema(
        operation_id="keys_update",
        request=KeyUpdateInputSerializer,
        responses=KeyEnvelopeSerializer,
        summary="Change a key's name, limits, allowed models, expiry or disabled flag",
    )
    def patch(self, request: Request, public_id: Any) -> Response:
        caller = caller_of(request)
        api_key = self._get_key(caller, public_id)
        _require_manager(caller)
        serializer = KeyUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if serializer.validated_data.get("disabled"):
            _refuse_self_lockout(request, api_key)
        try:
            services.api_key_update(api_key=api_key, **_model_changes(serializer.validated_data))
        except DjangoValidationError as exc:
            raise _drf_validation_error(exc) from None
        return Response({"data": KeySerializer(api_key).data})

    @extend_schema(
        operation_id="keys_delete",
        responses={200: DeletedSerializer},
        summary="Revoke a key: its URL answers 404 from then on; "
        "GET /keys?status=revoked still lists it",
    )
    def delete(self, request: Request, public_id: Any) -> Response:
        caller = caller_of(request)
        api_key = self._get_key(caller, public_id)
        _require_manager(caller)
        _refuse_self_lockout(request, api_key)
        services.api_key_revoke(api_key=api_key)
        return Response({"deleted": True})


class TeamCurrentApi(ManagementApiView):
    @staticmethod
    def _team_data(caller: Caller) -> dict[str, Any]:
        team = caller.team
        return {
            "slug": team.slug,
            "name": team.name,
            "created_at": team.created_at,
            "role": caller.role,
            "authenticated_as": "user" if caller.user else "management_key",
            "member_count": team.memberships.count(),
            "key_count": team.api_keys.filter(revoked_at__isnull=True).count(),
            "data_policy": team.data_policy,
            "pii_mode": team.pii_mode,
        }

    @extend_schema(operation_id="teams_current", responses=TeamEnvelopeSerializer)
    def get(self, request: Request) -> Response:
        return Response({"data": self._team_data(caller_of(request))})

    @extend_schema(
        operation_id="teams_current_update",
        request=TeamUpdateInputSerializer,
        responses=TeamEnvelopeSerializer,
        summary="Set the team's data policy and PII mode (only owners may loosen them)",
    )
    def patch(self, request: Request) -> Response:
        caller = caller_of(request)
        if not caller.can_manage:
            raise exceptions.PermissionDenied("Only team owners and admins can change the team.")
        serializer = TeamUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            team_data_handling_update(
                team=caller.team, role=caller.role, **serializer.validated_data
            )
        except DjangoPermissionDenied as exc:
            raise exceptions.PermissionDenied(str(exc)) from None
        except DjangoValidationError as exc:
            raise _drf_validation_error(exc) from None
        return Response({"data": self._team_data(caller)})


class AuditListApi(ManagementApiView):
    """The team's audit log: owners, admins and management keys; no OAuth scope."""

    # No scope lets an OAuth app read who changed what in a team.
    oauth_read_scopes: tuple[str, ...] = ()
    oauth_write_scopes: tuple[str, ...] = ()

    @extend_schema(
        operation_id="audit_list",
        parameters=[AuditQuerySerializer],
        responses=AuditListSerializer,
        summary="List the team's audit events, newest first",
    )
    def get(self, request: Request) -> Response:
        caller = caller_of(request)
        _require_manager(caller, roles.Action.AUDIT_READ)
        query = AuditQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        events = audit_event_list(
            team=caller.team, action=params.get("action", ""), actor=params.get("actor", "")
        )
        offset, size = params["offset"], params["page_size"]
        page = list(events[offset : offset + size])
        return Response(
            {
                "data": AuditEventSerializer(page, many=True).data,
                "total": events.count(),
                "offset": offset,
                "page_size": size,
            }
        )
