from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from routing.models import Deployment, Model, Provider


class DeploymentInline(admin.TabularInline):
    model = Deployment
    extra = 0


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    """Providers; what carries a credential is owned by the catalog file.

    The credential variable is never editable here (credentials come only
    from what the catalog declares), and a provider the file manages keeps
    its kind and base URL from the file, so no edit here can send its
    credential elsewhere. base_url is checked against the outbound policy
    (providers.outbound) on save and again on every connection.
    """

    list_display = ["name", "kind", "base_url", "api_key_env", "enabled", "managed"]
    list_filter = ["kind", "enabled", "managed"]
    search_fields = ["name", "base_url"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is not None and obj.managed:
            return ["name", "kind", "base_url", "api_key_env", "managed"]
        return ["api_key_env", "managed"]


@admin.register(Model)
class ModelAdmin(admin.ModelAdmin):
    list_display = ["model_id", "type", "prompt_price", "completion_price", "enabled", "managed"]
    list_filter = ["type", "enabled", "managed"]
    search_fields = ["model_id", "display_name"]
    inlines = [DeploymentInline]
