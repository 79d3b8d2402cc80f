"""The Celery app. Without CELERY_BROKER_URL tasks run eagerly in-process."""

from __future__ import annotations

import os

from celery import Celery
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xrouter_site.settings")

app = Celery("xrouter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Usage roll-ups live in the routing app's usage package.
app.autodiscover_tasks(["routing.usage"], related_name="tasks")

# Without a broker tasks run eagerly, but Celery's eager apply_async still
# acquires a producer for the default broker (amqp://localhost), which makes
# kombu warn "No hostname was supplied" at every scheduled probe. An
# in-memory transport gives it something real that never leaves the process.
if not settings.CELERY_BROKER_URL:
    app.conf.broker_url = "memory://localhost/"
