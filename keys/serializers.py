"""Serializers of the management API (``/api/v1/``).

Input and output are separate classes (HackSoft style). Inputs are
allowlists: :class:`StrictInputSerializer` refuses any field it does not
declare, so ``team``, ``key_hash``, ``created_by`` or ``kind`` cannot be
assigned through the API. Types are strict too: ``"5"`` is not an integer
and ``"true"`` is not a boolean.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.validators import RegexValidator
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail

from accounts.models import AuditEvent, DataPolicy, PiiMode
from keys.models import ApiKey
from keys.selectors import KEY_STATUSES, catalog_model_ids

_NOT_BLANK = RegexValidator(r"^[^\x00]*[^\s\x00][^\x00]*$", "The name must not be blank.")
PG_INT_MAX = 2_147_483_647  # PositiveIntegerField is a PostgreSQL integer
MAX_ALLOWED_MODELS = 100


class StrictInputSerializer(serializers.Serializer):
    """Refuse undeclared fields with 400 instead of ignoring them."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {
                        name: [ErrorDetail("This field is not accepted.", code="unknown_field")]
                        for name in unknown
                    }
                )
        return super().to_internal_value(data)


class StrictQuerySerializer(StrictInputSerializer):
    """Query parameters: an empty value (``?page_size=``) is an error, not "unset".

    DRF treats a blank query value of a non-string field as absent and uses
    the default; the schema says it must be a value.
    """

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            blank = sorted(
                name
                for name, field in self.fields.items()
                if data.get(name) == ""
                and not (isinstance(field, serializers.CharField) and field.allow_blank)
            )
            if blank:
                raise serializers.ValidationError(
                    {
                        name: [ErrorDetail("This field may not be blank.", code="blank")]
                        for name in blank
                    }
                )
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """An integer that must arrive as a JSON integer (not a string or bool)."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    """A string that must arrive as a JSON string (DRF would coerce numbers)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictModelIdField(StrictCharField, serializers.RegexField):
    """A model id string shaped like the catalog's (``vendor/model[:version]``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            r"^[A-Za-z0-9][A-Za-z0-9._\-]*(/[A-Za-z0-9._\-]+)*(:[A-Za-z0-9._\-]+)?$",
            max_length=200,
            allow_blank=False,
            **kwargs,
        )


class StrictBooleanField(serializers.BooleanField):
    """A boolean that must arrive as JSON ``true`` or ``false``."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


@extend_schema_field(
    {
        "type": "number",
        "minimum": 0,
        "maximum": 999999999999.99,
        "multipleOf": 0.01,
        "nullable": True,
    }
)
class StrictDecimalField(serializers.DecimalField):
    """A decimal that must arrive as a JSON number (not a string or bool)."""

    def to_internal_value(self, data: Any) -> Decimal:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


def _validate_future(value: datetime | None) -> datetime | None:
    if value is not None and value <= timezone.now():
        raise serializers.ValidationError("The expiry must be in the future.", code="in_past")
    return value


def _validate_models(value: list[str]) -> list[str]:
    known = catalog_model_ids()
    unknown = sorted({model for model in value if model not in known})
    if unknown:
        raise serializers.ValidationError(
            f"Unknown model ids: {', '.join(unknown[:5])}.", code="model_not_found"
        )
    return value


class _KeySettingsInput(StrictInputSerializer):
    # Blank after trimming is refused; the pattern tells the schema so.
    name = StrictCharField(max_length=100, allow_blank=False, validators=[_NOT_BLANK])
    limit = StrictDecimalField(
        max_digits=14,
        decimal_places=2,
        min_value=Decimal(0),
        allow_null=True,
        required=False,
        help_text="Budget in RUB; null for no limit.",
    )
    expires_at = serializers.DateTimeField(
        allow_null=True, required=False, help_text="ISO 8601; must be in the future."
    )
    rpm_limit = StrictIntegerField(
        min_value=1, max_value=PG_INT_MAX, allow_null=True, required=False
    )
    tpm_limit = StrictIntegerField(
        min_value=1, max_value=PG_INT_MAX, allow_null=True, required=False
    )
    allowed_models = serializers.ListField(
        child=StrictModelIdField(),
        max_length=MAX_ALLOWED_MODELS,
        required=False,
        help_text="Catalog model ids (a base id allows every version); empty allows all.",
    )
    pii_mode = serializers.ChoiceField(
        choices=["", *PiiMode.values],
        required=False,
        help_text="PII guardrail for this key: '' follows the team; a key can be stricter "
        "than its team (off < redact < block), never looser.",
    )

    def validate_expires_at(self, value: datetime | None) -> datetime | None:
        return _validate_future(value)

    def validate_allowed_models(self, value: list[str]) -> list[str]:
        return _validate_models(value)


class KeyCreateInputSerializer(_KeySettingsInput):
    """What ``POST /api/v1/keys`` accepts."""


class KeyUpdateInputSerializer(_KeySettingsInput):
    """What ``PATCH /api/v1/keys/{id}`` accepts; every field is optional."""

    name = StrictCharField(
        max_length=100, allow_blank=False, required=False, validators=[_NOT_BLANK]
    )
    disabled = StrictBooleanField(required=False)


class KeyListQuerySerializer(StrictQuerySerializer):
    """Query parameters of ``GET /api/v1/keys``."""

    # No NUL: PostgreSQL text cannot hold it (the pattern tells clients).
    # "+": with allow_blank the schema is oneOf [pattern, empty], which must not overlap.
    search = serializers.RegexField(r"^[^\x00]+$", max_length=100, required=False, allow_blank=True)
    status = serializers.ChoiceField(choices=KEY_STATUSES, required=False, allow_blank=False)
    offset = serializers.IntegerField(min_value=0, max_value=PG_INT_MAX, default=0)
    page_size = serializers.IntegerField(min_value=1, max_value=100, default=50)


class KeySerializer(serializers.Serializer):
    """A key as the API shows it: never the secret, never its hash."""

    id = serializers.UUIDField(source="public_id", read_only=True)
    name = serializers.CharField(read_only=True)
    label = serializers.CharField(source="masked", read_only=True)
    kind = serializers.ChoiceField(choices=ApiKey.Kind.choices, read_only=True)
    status = serializers.SerializerMethodField()
    disabled = serializers.BooleanField(read_only=True)
    playground = serializers.BooleanField(
        read_only=True,
        help_text="Minted by the dashboard's playground for its user; always expires.",
    )
    limit = serializers.DecimalField(
        source="budget_rub",
        max_digits=14,
        decimal_places=2,
        coerce_to_string=False,
        read_only=True,
        allow_null=True,
    )
    rpm_limit = serializers.IntegerField(read_only=True, allow_null=True)
    tpm_limit = serializers.IntegerField(read_only=True, allow_null=True)
    allowed_models = serializers.ListField(child=serializers.CharField(), read_only=True)
    pii_mode = serializers.CharField(
        read_only=True, help_text="The key's own PII mode; '' follows the team."
    )
    created_at = serializers.DateTimeField(read_only=True)
    expires_at = serializers.DateTimeField(read_only=True, allow_null=True)
    revoked_at = serializers.DateTimeField(read_only=True, allow_null=True)
    last_used_at = serializers.DateTimeField(read_only=True, allow_null=True)

    @extend_schema_field(serializers.ChoiceField(choices=KEY_STATUSES))
    def get_status(self, obj: ApiKey) -> str:
        return obj.status()


class KeyEnvelopeSerializer(serializers.Serializer):
    data = KeySerializer()


class KeyCreatedSerializer(serializers.Serializer):
    data = KeySerializer()
    key = serializers.CharField(help_text="The secret. Shown in this response only.")


class KeyListSerializer(serializers.Serializer):
    data = KeySerializer(many=True)
    total = serializers.IntegerField()
    offset = serializers.IntegerField()
    page_size = serializers.IntegerField()


class DeletedSerializer(serializers.Serializer):
    deleted = serializers.BooleanField()


class TeamSerializer(serializers.Serializer):
    slug = serializers.SlugField()
    name = serializers.CharField()
    created_at = serializers.DateTimeField()
    role = serializers.CharField(
        allow_null=True, help_text="The caller's role; null for a management key."
    )
    authenticated_as = serializers.ChoiceField(choices=["user", "management_key"])
    member_count = serializers.IntegerField()
    key_count = serializers.IntegerField(help_text="Keys that are not revoked.")
    data_policy = serializers.ChoiceField(choices=DataPolicy.choices)
    pii_mode = serializers.ChoiceField(choices=PiiMode.choices)


class TeamUpdateInputSerializer(StrictInputSerializer):
    """What ``PATCH /api/v1/teams/current`` accepts.

    Owners may set anything; admins and management keys may only tighten
    (``any`` < ``ru_only`` < ``ru_no_retention``, ``off`` < ``redact`` < ``block``).
    """

    data_policy = serializers.ChoiceField(choices=DataPolicy.values, required=False)
    pii_mode = serializers.ChoiceField(choices=PiiMode.values, required=False)


class TeamEnvelopeSerializer(serializers.Serializer):
    data = TeamSerializer()


class AuditQuerySerializer(StrictQuerySerializer):
    """Query parameters of ``GET /api/v1/audit``."""

    action = serializers.ChoiceField(choices=AuditEvent.Action.values, required=False)
    actor = serializers.RegexField(
        r"^[^\x00]+$",
        max_length=200,
        required=False,
        help_text="Part of the actor's name (a username, or a management key's name).",
    )
    offset = serializers.IntegerField(min_value=0, max_value=PG_INT_MAX, default=0)
    page_size = serializers.IntegerField(min_value=1, max_value=100, default=50)


class AuditChangeSerializer(serializers.Serializer):
    before = serializers.JSONField(allow_null=True)
    after = serializers.JSONField(allow_null=True)


class AuditActorSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=AuditEvent.ActorKind.values, source="actor_kind")
    label = serializers.CharField(
        source="actor_label",
        help_text="The username, or the management key's name and prefix; empty for the system.",
    )


class AuditTargetSerializer(serializers.Serializer):
    type = serializers.ChoiceField(
        choices=["key", "team", "member", "invitation", "oauth_app"], source="target_type"
    )
    id = serializers.CharField(source="target_id")
    label = serializers.CharField(source="target_label")


class AuditEventSerializer(serializers.Serializer):
    """One audit event: never a secret, never a key's plaintext or hash."""

    created_at = serializers.DateTimeField()
    action = serializers.ChoiceField(choices=AuditEvent.Action.values)
    actor = AuditActorSerializer(source="*")
    client_ip = serializers.IPAddressField(allow_null=True)
    target = AuditTargetSerializer(source="*")
    changes = serializers.DictField(
        child=AuditChangeSerializer(),
        help_text="The fields that changed: {field: {before, after}}.",
    )


class AuditListSerializer(serializers.Serializer):
    data = AuditEventSerializer(many=True)
    total = serializers.IntegerField()
    offset = serializers.IntegerField()
    page_size = serializers.IntegerField()
