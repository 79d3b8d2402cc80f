"""The catalog's REST API: ``GET /api/v1/models`` on the management API.

It shares the management API's authentication, errors and envelopes
(:class:`keys.api.ManagementApiView`); the data is the live routing table,
so it shows exactly what ``/v1/`` serves.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from keys.api import ManagementApiView, caller_of
from keys.serializers import StrictQuerySerializer
from routing.table import ModelRoute, catalog_model_list


class PricingSerializer(serializers.Serializer):
    prompt = serializers.DecimalField(
        max_digits=12, decimal_places=6, allow_null=True, coerce_to_string=True
    )
    completion = serializers.DecimalField(
        max_digits=12, decimal_places=6, allow_null=True, coerce_to_string=True
    )
    currency = serializers.CharField()
    unit = serializers.CharField()


class ModelSerializer(serializers.Serializer):
    """A catalog model; ``id`` is what clients pass as ``model`` to ``/v1/``."""

    id = serializers.CharField(source="model_id")
    base_id = serializers.SerializerMethodField()
    version = serializers.SerializerMethodField()
    type = serializers.CharField()
    display_name = serializers.CharField()
    context_length = serializers.IntegerField(allow_null=True)
    deprecated = serializers.SerializerMethodField()
    upstream_version = serializers.SerializerMethodField()
    pricing = serializers.SerializerMethodField()

    @extend_schema_field(OpenApiTypes.STR)
    def get_base_id(self, obj: ModelRoute) -> str:
        return obj.model_id.partition(":")[0]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_version(self, obj: ModelRoute) -> str | None:
        return obj.model_id.partition(":")[2] or None

    # Version lifecycle fields arrive with routing.versions; read them
    # defensively so the API does not depend on that catalog revision.
    @extend_schema_field(OpenApiTypes.BOOL)
    def get_deprecated(self, obj: ModelRoute) -> bool:
        return bool(getattr(obj, "deprecated", False))

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_upstream_version(self, obj: ModelRoute) -> str | None:
        return getattr(obj, "upstream_version", "") or None

    @extend_schema_field(PricingSerializer)
    def get_pricing(self, obj: ModelRoute) -> dict[str, Any]:
        return PricingSerializer(
            {
                "prompt": obj.prompt_price,
                "completion": obj.completion_price,
                "currency": "RUB",
                "unit": "1K tokens",
            }
        ).data


class ModelListSerializer(serializers.Serializer):
    data = ModelSerializer(many=True)


class ModelListQuerySerializer(StrictQuerySerializer):
    type = serializers.ChoiceField(choices=["chat", "embedding"], required=False, allow_blank=False)


class ModelListApi(ManagementApiView):
    @extend_schema(
        operation_id="models_list",
        parameters=[ModelListQuerySerializer],
        responses=ModelListSerializer,
        summary="The model catalog with versions and prices (RUB per 1K tokens)",
    )
    def get(self, request: Request) -> Response:
        caller_of(request)
        query = ModelListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        models = catalog_model_list(model_type=query.validated_data.get("type", ""))
        return Response({"data": ModelSerializer(models, many=True).data})
