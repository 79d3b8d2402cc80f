"""URLs of the OAuth server, its dashboard pages and the key exchange.

``protocol_urlpatterns`` keep DOT's ``oauth2_provider`` namespace and URL
names because DOT's RFC 8414 metadata view reverses them; only the
endpoints XRouter enables are routed (no device flow, no DCR, no OIDC).
"""

from __future__ import annotations

from django.urls import path
from oauth2_provider import views as dot_views

from accounts.oauth import exchange as oauth_exchange
from accounts.oauth import views as oauth_views

protocol_urlpatterns = [
    path("authorize/", oauth_views.XRouterAuthorizationView.as_view(), name="authorize"),
    path("token/", oauth_views.XRouterTokenView.as_view(), name="token"),
    path("revoke/", oauth_views.XRouterRevokeTokenView.as_view(), name="revoke-token"),
    path("introspect/", oauth_views.XRouterIntrospectView.as_view(), name="introspect"),
]

# RFC 8414 3: the metadata lives at the site root; the issuer is the origin.
metadata_urlpatterns = [
    path(
        ".well-known/oauth-authorization-server",
        dot_views.OAuthServerMetadataView.as_view(),
        name="oauth-server-metadata",
    ),
]

dashboard_urlpatterns = [
    path("apps/", oauth_views.application_list, name="applications"),
    path("apps/<int:pk>/delete/", oauth_views.application_delete, name="application_delete"),
    path("authorized/", oauth_views.authorized_list, name="authorized"),
    path("authorized/<int:pk>/revoke/", oauth_views.authorized_revoke, name="authorized_revoke"),
]

exchange_authorize_urlpatterns = [
    path("auth", oauth_exchange.exchange_authorize, name="exchange_authorize"),
]

exchange_api_urlpatterns = [
    path("auth/keys", oauth_exchange.exchange_keys, name="exchange_keys"),
]
