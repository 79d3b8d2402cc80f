"""URLs of the management API, included under ``/api/v1/``."""

from __future__ import annotations

from django.urls import path, re_path

from keys import api
from keys.api_errors import api_not_found

app_name = "api"

urlpatterns = [
    path("keys", api.KeyListCreateApi.as_view(), name="keys"),
    path("keys/<uuid:public_id>", api.KeyDetailApi.as_view(), name="key-detail"),
    path("teams/current", api.TeamCurrentApi.as_view(), name="team-current"),
    path("audit", api.AuditListApi.as_view(), name="audit"),
    # Last: JSON 404 for everything else, never Django's HTML page.
    # [\s\S], not ".": a path with a newline in it gets the JSON 404 too.
    re_path(r"^(?P<unmatched>[\s\S]*)$", api_not_found),
]
