"""Dashboard URLs of limits and budgets, included under ``/limits/``."""

from __future__ import annotations

from django.urls import path

from routing.limits import views

app_name = "limits"

urlpatterns = [
    path("", views.team_limits, name="team"),
]
