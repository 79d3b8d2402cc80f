"""The Celery app. Without CELERY_BROKER_URL tasks run eagerly in-process."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xrouter_site.settings")

app = Celery("xrouter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Usage roll-ups live in the routing app's usage package.
app.autodiscover_tasks(["routing.usage"], related_name="tasks")
