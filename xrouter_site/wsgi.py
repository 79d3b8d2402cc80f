"""WSGI entry point (gunicorn: ``xrouter_site.wsgi:application``)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

from xrouter_site.checks import refuse_insecure_start

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xrouter_site.settings")

application = get_wsgi_application()
# After setup: settings are loaded, nothing is served yet.
refuse_insecure_start()
