"""URLs of usage accounting, included at the site root.

The dashboard pages live under ``usage/``; ``api/v1/generation`` must be
matched before the management API's catch-all 404, and ``metrics`` is the
Prometheus scrape target.
"""

from __future__ import annotations

from django.urls import path

from routing.usage import api as usage_api
from routing.usage import views as usage_views

app_name = "usage"

urlpatterns = [
    path("usage/", usage_views.usage_overview, name="overview"),
    path("usage/requests/", usage_views.usage_requests, name="requests"),
    path(
        "usage/requests/<str:request_id>/",
        usage_views.usage_request_detail,
        name="request_detail",
    ),
    path("usage/export.csv", usage_views.usage_export, name="export"),
    path("api/v1/generation", usage_api.GenerationApi.as_view(), name="generation"),
]
