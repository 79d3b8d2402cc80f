"""URLs of the dashboard, admin and probes. ``/v1/`` is served by
:class:`routing.middleware.GatewayMiddleware` before URL resolution."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from xrouter_site import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("admin/", admin.site.urls),
]
