"""
ASGI config for xrouter_site project.

It exposes the ASGI callable as a module-level variable named ``application``.

For more information on this file, see
https://docs.djangoproject.com/en/5.2/howto/deployment/asgi/
"""

import os

from django.core.asgi import get_asgi_application

from xrouter_site.checks import refuse_insecure_start

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xrouter_site.settings")

application = get_asgi_application()
# After setup: settings are loaded, nothing is served yet.
refuse_insecure_start()
