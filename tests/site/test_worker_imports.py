"""What a gunicorn worker imports before it serves a page (issue 19, memory).

Every module a worker imports stays in its memory for its whole life, so
the paths every worker serves (``/v1/`` and the orchestrator probes) must
not pull in the dashboard's code. Each check runs in a fresh process: this
test process has imported everything long ago.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Serve WSGI requests to the production application in this process and
# report, after each, the status, a few headers and whether the site's
# URLconf and requests were imported.
SERVE = """
import json, sys
from wsgiref.util import setup_testing_defaults
import django
django.setup()
from xrouter_site.wsgi import application

def serve(path):
    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    seen = {}
    def start_response(status, headers, exc_info=None):
        seen["status"] = int(status.split()[0])
        seen["headers"] = dict(headers)
    body = b"".join(application(environ, start_response))
    headers = seen["headers"]
    return {
        "path": path,
        "status": seen["status"],
        "body": body.decode()[:200] if path in ("/healthz", "/readyz") else "",
        "request_id": bool(headers.get("X-Request-ID")),
        "csp": bool(headers.get("Content-Security-Policy")),
        "nosniff": headers.get("X-Content-Type-Options"),
        "site_urls": "xrouter_site.urls" in sys.modules,
        # The wire client serves /v1/; requests waits for a form post or a login.
        "requests": "requests" in sys.modules,
    }

print(json.dumps([serve(path) for path in sys.argv[1:]]))
"""


def _serve(tmp_path: Path, *paths: str) -> list[dict[str, object]]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="xrouter_site.settings",
        XROUTER_VAR_DIR=str(tmp_path),
        DEBUG="true",
    )
    out = subprocess.run(
        [sys.executable, "-c", SERVE, *paths],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: list[dict[str, object]] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_probes_do_not_load_the_site_urlconf_and_pages_still_do(tmp_path: Path) -> None:
    healthz, readyz, favicon = _serve(tmp_path, "/healthz", "/readyz", "/favicon.ico")
    assert (healthz["status"], json.loads(str(healthz["body"]))) == (200, {"status": "ok"})
    assert readyz["status"] == 200
    assert json.loads(str(readyz["body"]))["checks"] == {"database": "ok", "cache": "ok"}
    # The probes still pass the whole middleware stack.
    for probe in (healthz, readyz):
        assert (probe["request_id"], probe["csp"], probe["nosniff"]) == (True, True, "nosniff")
        assert (probe["site_urls"], probe["requests"]) == (False, False)
    # The first page resolves against the full URLconf, loaded then.
    assert (favicon["status"], favicon["site_urls"]) == (301, True)


def test_probe_urlconf_serves_the_same_views_as_the_site() -> None:
    from django.urls import resolve

    from routing.gateway.middleware import PROBE_PATHS, PROBE_URLCONF
    from xrouter_site import probe_urls

    assert PROBE_URLCONF == probe_urls.__name__
    for path in PROBE_PATHS:
        site = resolve(path)
        probe = resolve(path, urlconf=PROBE_URLCONF)
        assert (probe.func, probe.url_name) == (site.func, site.url_name)
    assert {f"/{p.pattern}" for p in probe_urls.urlpatterns} == PROBE_PATHS
