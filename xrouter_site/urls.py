"""URLs of the dashboard, admin and probes. ``/v1/`` is served by
:class:`routing.gateway.middleware.GatewayMiddleware` before URL resolution."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from accounts.oauth import urls as oauth_urls
from routing import api as catalog_api
from routing import key_api, metrics_views
from xrouter_site import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    # Dashboard, accounts and the management API (accounts, keys apps).
    path("", include("keys.urls")),
    path("accounts/", include("accounts.urls")),
    path("routing/", include("routing.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path(
        "api/schema/",
        SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[AllowAny]),
        name="api-schema",
    ),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="api-schema", permission_classes=[AllowAny]),
        name="api-docs",
    ),
    path(
        "api/redoc/",
        SpectacularRedocView.as_view(url_name="api-schema", permission_classes=[AllowAny]),
        name="api-redoc",
    ),
    # Usage pages and /api/v1/generation (before the API's catch-all).
    path("", include("routing.usage.urls")),
    # The Prometheus scrape target.
    path("metrics", metrics_views.metrics_view, name="metrics"),
    # OAuth 2.0 server, its dashboard pages and the OpenRouter-style key
    # exchange (accounts/oauth_urls.py). The exchange API goes before
    # keys.api_urls, whose last pattern answers every other /api/v1/ path.
    path("", include(oauth_urls.metadata_urlpatterns)),
    path("oauth/", include((oauth_urls.protocol_urlpatterns, "oauth2_provider"))),
    path("oauth/", include((oauth_urls.dashboard_urlpatterns, "oauth"))),
    path("", include((oauth_urls.exchange_authorize_urlpatterns, "oauth_exchange"))),
    path("api/v1/", include((oauth_urls.exchange_api_urlpatterns, "oauth_exchange_api"))),
    # The catalog REST API (routing.api) goes before it too.
    path("api/v1/models", catalog_api.ModelListApi.as_view(), name="api-models"),
    # Self-service key info (routing.key_api), before the catch-all too.
    path("api/v1/key", key_api.KeyInfoApi.as_view(), name="api-key-current"),
    path("api/v1/credits", key_api.CreditsApi.as_view(), name="api-credits"),
    path("api/v1/", include("keys.api_urls")),
]
