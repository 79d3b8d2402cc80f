"""Playground URLs, included by ``keys.urls`` under ``playground/``."""

from __future__ import annotations

from django.urls import path

from keys.playground import views

urlpatterns = [
    path("", views.playground, name="playground"),
    path("key/", views.playground_key, name="playground_key"),
    path("key/revoke/", views.playground_key_revoke, name="playground_key_revoke"),
]
