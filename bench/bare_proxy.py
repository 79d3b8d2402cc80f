"""The floor: a Django-less WSGI proxy under the same gunicorn settings.

It does the least a proxy must do (read the body, POST it upstream over a
pooled ``requests.Session``, return the answer) and nothing the gateway
adds (auth, validation, routing, logging, response rebuilding). Measured in
the same run, gateway/bare is what XRouter's features cost.

Served as ``gunicorn -c deploy/gunicorn.conf.py --pythonpath bench
bare_proxy:application`` with ``BENCH_UPSTREAM_URL`` set.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import requests
from requests.adapters import HTTPAdapter

UPSTREAM_URL = os.environ.get("BENCH_UPSTREAM_URL", "http://127.0.0.1:18080/v1/chat/completions")

# One pooled session per worker, sized like the gateway's (256): with gevent
# every greenlet may hold a connection at once.
_session = requests.Session()
_session.mount("http://", HTTPAdapter(pool_connections=4, pool_maxsize=256, max_retries=0))

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    try:
        upstream = _session.post(
            UPSTREAM_URL,
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=(5.0, 120.0),
        )
    except requests.RequestException:
        start_response("502 Bad Gateway", [("Content-Type", "application/json")])
        return [b'{"error":{"message":"upstream failed"}}']
    content = upstream.content
    start_response(
        f"{upstream.status_code} {upstream.reason}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(content)))],
    )
    return [content]
