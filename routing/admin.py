from __future__ import annotations

from django.contrib import admin

from routing.models import Deployment, Model, Provider


class DeploymentInline(admin.TabularInline):
    model = Deployment
    extra = 0


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "base_url", "api_key_env", "enabled", "managed"]
    list_filter = ["kind", "enabled", "managed"]
    search_fields = ["name", "base_url"]


@admin.register(Model)
class ModelAdmin(admin.ModelAdmin):
    list_display = ["model_id", "type", "prompt_price", "completion_price", "enabled", "managed"]
    list_filter = ["type", "enabled", "managed"]
    search_fields = ["model_id", "display_name"]
    inlines = [DeploymentInline]
