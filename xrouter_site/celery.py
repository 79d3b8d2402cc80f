"""The Celery app. Without CELERY_BROKER_URL tasks run eagerly in-process."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xrouter_site.settings")

app = Celery("xrouter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Usage roll-ups live beside the health probes in the routing app.
app.autodiscover_tasks(["routing"], related_name="usage_tasks")
