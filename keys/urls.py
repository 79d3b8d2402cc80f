"""Dashboard URLs (home, keys and the playground), included at the site root."""

from __future__ import annotations

from django.urls import include, path

from keys import views
from keys.playground import urls as playground_urls

app_name = "dashboard"

urlpatterns = [
    path("", views.home, name="home"),
    path("keys/", views.key_list, name="keys"),
    path("keys/new/", views.key_create, name="key_create"),
    path("keys/<uuid:public_id>/", views.key_detail, name="key_detail"),
    path("keys/<uuid:public_id>/revoke/", views.key_revoke, name="key_revoke"),
    path("keys/<uuid:public_id>/rotate/", views.key_rotate, name="key_rotate"),
    path("playground/", include(playground_urls)),
]
