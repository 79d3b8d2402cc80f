"""Dashboard URLs of the routing app, included under ``/routing/``."""

from __future__ import annotations

from django.urls import path

from routing import views

app_name = "routing"

urlpatterns = [
    path("deployments/", views.deployment_list, name="deployments"),
]
