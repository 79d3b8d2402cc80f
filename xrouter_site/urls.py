"""URLs of the dashboard, admin and probes. ``/v1/`` is served by
:class:`routing.gateway.middleware.GatewayMiddleware` before URL resolution."""

from __future__ import annotations

from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)
from rest_framework.permissions import AllowAny

from accounts.lockout import throttle_login_posts
from accounts.oauth import urls as oauth_urls
from routing import api as catalog_api
from routing import key_api, metrics_views
from xrouter_site import views

# The admin login gets the dashboard's per-address cap; django-axes (an
# authentication backend) locks (username, address) pairs on both.
admin.site.login = throttle_login_posts(admin.site.login)  # type: ignore[method-assign]

_DOCS_CSP = csp_update({"style-src": ["'unsafe-inline'"], "worker-src": ["'self'", "blob:"]})

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    # Pages without a <link rel="icon"> (API docs, admin) still get one.
    path("favicon.ico", views.favicon, name="favicon"),
    path("admin/", admin.site.urls),
    # Dashboard, accounts and the management API (accounts, keys apps).
    path("", include("keys.urls")),
    path("accounts/", include("accounts.urls")),
    path("routing/", include("routing.urls")),
    path("limits/", include("routing.limits.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path(
        "api/schema/",
        SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[AllowAny]),
        name="api-schema",
    ),
    # The split view serves Swagger UI's start-up script as a file, so the
    # page needs no inline script under the site's CSP. Swagger UI and Redoc
    # inject <style> elements at run time (Redoc also a blob: worker): their
    # two pages alone allow that.
    path(
        "api/docs/",
        _DOCS_CSP(
            SpectacularSwaggerSplitView.as_view(
                url_name="api-schema", permission_classes=[AllowAny]
            )
        ),
        name="api-docs",
    ),
    path(
        "api/redoc/",
        _DOCS_CSP(
            SpectacularRedocView.as_view(url_name="api-schema", permission_classes=[AllowAny])
        ),
        name="api-redoc",
    ),
    # Usage pages and /api/v1/generation (before the API's catch-all).
    path("", include("routing.usage.urls")),
    # The Prometheus scrape target.
    path("metrics", metrics_views.metrics_view, name="metrics"),
    # OAuth 2.0 server, its dashboard pages and the OpenRouter-style key
    # exchange (accounts/oauth/urls.py). The exchange API goes before
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
