"""URLs of usage accounting, included at the site root.

The dashboard pages live under ``usage/``; ``api/v1/generation``, ``key``
and ``credits`` must be matched before the management API's catch-all 404, and ``metrics`` is the
Prometheus scrape target.
"""

from __future__ import annotations

from django.urls import path

from routing import key_info_api, metrics_views, usage_api, usage_views

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
    path("api/v1/key", key_info_api.KeyInfoApi.as_view(), name="key-current"),
    path("api/v1/credits", key_info_api.CreditsApi.as_view(), name="credits"),
    path("metrics", metrics_views.metrics_view, name="metrics"),
]
