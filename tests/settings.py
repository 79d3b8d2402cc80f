"""Test settings: production settings with a fast hasher and plain static storage.

The database and cache come from the environment like production
(``make test`` points them at the local PostgreSQL and Redis).
"""

from __future__ import annotations

from xrouter_site.settings import *  # noqa: F403

# The web entry points refuse the public placeholder with DEBUG off
# (xrouter_site.checks.refuse_insecure_start); gateway processes started by
# tests share this fixed key with the test process (sessions, CSRF).
SECRET_KEY = env_secret("SECRET_KEY") or "xrouter-tests-only-key-never-deployed-6Qm2vT9pLx4wRk8s"  # noqa: S105, F405
# The provider emulators listen on loopback (providers.outbound).
XROUTER_OUTBOUND_ALLOW_LOOPBACK = env_bool("XROUTER_OUTBOUND_ALLOW_LOOPBACK", True)  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
SECURE_SSL_REDIRECT = False
# Tests flush explicitly; no background writer racing the test database.
XROUTER_LAST_USED_FLUSH_SECONDS = 3600.0
# The usage consumer would write from a background thread while tests hold
# the database; tests consume explicitly (routing.usage.records.StreamSink.consume_once).
XROUTER_USAGE_CONSUMER = env_bool("XROUTER_USAGE_CONSUMER", False)
# WhiteNoise warns on every request when STATIC_ROOT is missing (production
# runs collectstatic; the tests serve from the app folders instead).
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Tests read limiter state right after a settle; tests/routing/limits opts back in.
XROUTER_LIMITER_ASYNC_SETTLE = env_bool("XROUTER_LIMITER_ASYNC_SETTLE", False)
