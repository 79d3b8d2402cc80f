from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from keys.models import ApiKey


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are created through the dashboard, API or ``createapikey``:
    the admin never sees a plaintext or a hash."""

    list_display = [
        "name",
        "masked",
        "kind",
        "team",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
        "disabled",
    ]
    list_filter = [
        "kind",
        "disabled",
        ("revoked_at", admin.EmptyFieldListFilter),
        ("expires_at", admin.EmptyFieldListFilter),
        "team",
    ]
    search_fields = ["name", "prefix", "public_id", "team__slug", "team__name"]
    readonly_fields = [
        "public_id",
        "masked",
        "kind",
        "created_at",
        "last_used_at",
        "created_by",
        "team",
        "revoked_at",
    ]
    list_select_related = ["team"]
    exclude = ["key_hash", "prefix", "last4"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).select_related("team")
