"""The URLconf of the orchestrator probes alone (issue 19, worker memory).

Kubernetes asks every worker for ``/healthz`` and ``/readyz`` within seconds
of its start. Resolved against ``ROOT_URLCONF``, the first probe imported the
whole site: admin, DRF and drf-spectacular, the OAuth server, the dashboard
views, yaml and pygments, ~9.4 MB of RSS in each worker that then only served
``/v1/`` (measured with bench/run.py memory, see bench/profiles/memory-imports.txt).
:class:`routing.gateway.middleware.GatewayMiddleware` points those two paths
here (``request.urlconf``), so they still pass the whole middleware stack
(request id, security headers, CSP) but load only the probe views; the full
URLconf loads on the first page, admin or API request that needs it.
``xrouter_site.urls`` keeps the same patterns (a test pins both lists), so ``reverse()`` and other
hosts' routing are unchanged.
"""

from __future__ import annotations

from django.urls import path

from xrouter_site import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
]
