"""Django settings for XRouter, read from the environment.

Everything has a safe zero-config default so ``make run`` works on a fresh
machine: SQLite under ``var/``, a local-memory cache and Celery tasks run
in-process. Setting ``DATABASE_URL``, ``REDIS_URL`` and ``CELERY_BROKER_URL``
switches to PostgreSQL, Redis and a real Celery broker.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from xrouter_site import database_url, redis_connections

BASE_DIR = Path(__file__).resolve().parent.parent

# Placeholder that only local development may use; a system check
# (xrouter_site.checks) refuses it when DEBUG is off.
INSECURE_SECRET_KEY = "django-insecure-xrouter-local-development-only"  # noqa: S105


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true/false)")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_secret(name: str, default: str = "") -> str:
    """Read a secret from ``NAME`` or from the file named by ``NAME_FILE``.

    The ``_FILE`` form is how Docker and Kubernetes secrets are mounted.
    """
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path!r}: {exc}") from None
    return env_str(name, default)


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_secret("SECRET_KEY") or INSECURE_SECRET_KEY
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS", [])
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# Local state (SQLite file, demo catalog) lives here in zero-config runs.
VAR_DIR = Path(env_str("XROUTER_VAR_DIR") or BASE_DIR / "var")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    # Swagger UI / Redoc assets served from our static files, not a CDN.
    "drf_spectacular_sidecar",
    "xrouter_site.apps.XRouterSiteConfig",
    "accounts",
    "keys",
    "routing",
    # OAuth 2.0 authorization server for third-party apps (accounts/oauth/).
    "oauth2_provider",
    # Login lockout for the admin and the dashboard (accounts/lockout.py).
    "axes",
]

MIDDLEWARE = [
    # First: serves /v1/ entirely (no sessions, CSRF or auth middleware on
    # the hot path) and returns before the rest of the stack runs.
    "routing.gateway.middleware.GatewayMiddleware",
    "xrouter_site.middleware.RequestIDMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on every page (CONTENT_SECURITY_POLICY below).
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Lets audited services see who acts and from where (accounts/audit).
    "accounts.audit.context.AuditContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: turns a locked-out login into its 429.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "xrouter_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "xrouter_site.wsgi.application"

# --- Database -------------------------------------------------------------
# SQLite by default; DATABASE_URL (postgres://...) switches to PostgreSQL.
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {
        # A libpq host list (h1:5432,h2:5432/db?target_session_attrs=read-write)
        # is accepted for HA PostgreSQL: xrouter_site.database_url.
        "default": database_url.parse(
            DATABASE_URL,
            conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
            # A persistent connection that died in a failover is replaced
            # instead of failing the next request (Django's default is off).
            conn_health_checks=True,
        )
    }
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"].setdefault("OPTIONS", {}).update(
            {
                "connect_timeout": env_int("DB_CONNECT_TIMEOUT", 5),
                "keepalives": 1,
                "keepalives_idle": 30,
                "application_name": "xrouter",
            }
        )
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "xrouter.sqlite3"),
            # Several gunicorn workers share the file: wait for the write
            # lock instead of failing with "database is locked". They also
            # share rate limits and budgets through it (routing.limits.database):
            # WAL lets readers run beside the one writer, and NORMAL sync
            # (safe in WAL) keeps each short limiter commit off the fsync path.
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache ----------------------------------------------------------------
# REDIS_URL makes the cache shared by every worker and host; without it each
# process has its own memory cache, and code that needs cross-process
# agreement (key revocation, catalog versions) falls back to the database.
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            # One client per process, not per call and greenlet (redis_cache.py).
            "BACKEND": "xrouter_site.redis_cache.RedisCache",
            # A list: Django would split a string at the commas of a
            # redis+sentinel:// host list. Connections come from
            # xrouter_site.redis_connections (plain, TLS or Sentinel).
            "LOCATION": [REDIS_URL],
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "xr"),
            "OPTIONS": {
                "socket_connect_timeout": 0.5,
                "socket_timeout": 0.5,
                "health_check_interval": 30,
                "pool_class": "xrouter_site.redis_connections.PoolFactory",
            },
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "xrouter",
        }
    }
# True when every worker sees the same cache (see keys.auth).
XROUTER_SHARED_CACHE = bool(REDIS_URL)

# --- Celery ---------------------------------------------------------------
# Without a broker, tasks run in-process (eager) so nothing needs a worker.
# redis+sentinel:// URLs are turned into kombu's sentinel:// form plus
# master_name (xrouter_site.redis_connections.celery_url).
CELERY_BROKER_URL, _broker_options = redis_connections.celery_url(env_str("CELERY_BROKER_URL"))
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
_result_url, _result_options = redis_connections.celery_url(env_str("CELERY_RESULT_BACKEND"))
CELERY_RESULT_BACKEND = _result_url or None
if _result_options:
    CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = _result_options
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Longer than any task runs, so a slow task is not redelivered and run twice.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600, **_broker_options}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Periodic tasks, name -> {"task": dotted name, "schedule": seconds}. Celery
# beat runs them when a broker is set; otherwise `manage.py serve` runs the
# same entries in-process.
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {}

# --- Auth -----------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTH_USER_MODEL = "accounts.User"
XROUTER_LOGIN_FAILURE_LIMIT = env_int("XROUTER_LOGIN_FAILURE_LIMIT", 5)
XROUTER_LOGIN_COOLOFF_MINUTES = env_int("XROUTER_LOGIN_COOLOFF_MINUTES", 15)
AXES_FAILURE_LIMIT = XROUTER_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=XROUTER_LOGIN_COOLOFF_MINUTES)
# The pair, never the username alone: an attacker cannot lock the owner out.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "xrouter_site.client_ip.client_ip"
AXES_LOCKOUT_CALLABLE = "accounts.lockout.locked_out"
# Failed attempts live in the database: every worker and host sees them.
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "dashboard:home"
LOGOUT_REDIRECT_URL = "accounts:login"
# How long an invitation link stays valid. It also dies as soon as its
# creator may no longer invite with its role (accounts.credentials).
XROUTER_INVITATION_TTL_HOURS = env_int("XROUTER_INVITATION_TTL_HOURS", 7 * 24)
if XROUTER_INVITATION_TTL_HOURS < 1:
    raise ImproperlyConfigured("XROUTER_INVITATION_TTL_HOURS must be at least 1")
# The origin clients reach the gateway at, for the dashboard's quickstart
# snippets (https://llm.example.com). Unset: the request's own scheme and host.
XROUTER_PUBLIC_URL = env_str("XROUTER_PUBLIC_URL")
if XROUTER_PUBLIC_URL and not XROUTER_PUBLIC_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured("XROUTER_PUBLIC_URL must start with http:// or https://")
# How long a key the playground mints stays valid (keys/playground/).
XROUTER_PLAYGROUND_KEY_TTL_MINUTES = env_int("XROUTER_PLAYGROUND_KEY_TTL_MINUTES", 60)
if not 1 <= XROUTER_PLAYGROUND_KEY_TTL_MINUTES <= 24 * 60:
    raise ImproperlyConfigured("XROUTER_PLAYGROUND_KEY_TTL_MINUTES must be between 1 and 1440")
# Audit events (accounts/audit) older than this are deleted by the hourly
# "audit-purge" task; 0 keeps them forever.
XROUTER_AUDIT_RETENTION_DAYS = env_int("XROUTER_AUDIT_RETENTION_DAYS", 365)
if XROUTER_AUDIT_RETENTION_DAYS < 0:
    raise ImproperlyConfigured("XROUTER_AUDIT_RETENTION_DAYS must be 0 (forever) or more")

# --- Single sign-on (OpenID Connect, mozilla-django-oidc; accounts/sso.py) ---
# On when the provider's endpoints and a client id are set. Claims map to
# teams and roles through XROUTER_SSO_TEAM_MAP, a JSON list of rules
# [{"claim": "groups", "value": "acme-admins", "team": "acme", "role": "admin"}];
# a user no rule maps is refused. XROUTER_PASSWORD_LOGIN=false turns the
# local password login off (dashboard and admin).
OIDC_OP_AUTHORIZATION_ENDPOINT = env_str("OIDC_OP_AUTHORIZATION_ENDPOINT")
OIDC_OP_TOKEN_ENDPOINT = env_str("OIDC_OP_TOKEN_ENDPOINT")
OIDC_OP_USER_ENDPOINT = env_str("OIDC_OP_USER_ENDPOINT")
OIDC_OP_JWKS_ENDPOINT = env_str("OIDC_OP_JWKS_ENDPOINT")
OIDC_RP_CLIENT_ID = env_str("OIDC_RP_CLIENT_ID")
OIDC_RP_CLIENT_SECRET = env_secret("OIDC_RP_CLIENT_SECRET")
OIDC_RP_SIGN_ALGO = env_str("OIDC_RP_SIGN_ALGO", "RS256")
OIDC_RP_SCOPES = env_str("OIDC_RP_SCOPES", "openid email profile")
OIDC_USE_PKCE = True
OIDC_TIMEOUT = env_float("OIDC_TIMEOUT", 10.0)
OIDC_AUTHENTICATION_CALLBACK_URL = "accounts:sso_callback"
LOGIN_REDIRECT_URL_FAILURE = "/accounts/login/?sso=refused"
XROUTER_SSO_ENABLED = bool(
    OIDC_OP_AUTHORIZATION_ENDPOINT and OIDC_OP_TOKEN_ENDPOINT and OIDC_RP_CLIENT_ID
)
XROUTER_SSO_NAME = env_str("XROUTER_SSO_NAME", "SSO")
XROUTER_SSO_TEAM_MAP = env_str("XROUTER_SSO_TEAM_MAP", "[]")
# Accept an e-mail the provider has not verified (matching it to an
# existing account would otherwise hand that account to whoever typed it).
XROUTER_SSO_TRUST_UNVERIFIED_EMAIL = env_bool("XROUTER_SSO_TRUST_UNVERIFIED_EMAIL", False)
XROUTER_PASSWORD_LOGIN = env_bool("XROUTER_PASSWORD_LOGIN", True)
# django-axes' lockout goes first so a locked-out password login never
# reaches the password check (accounts/lockout.py).
AUTHENTICATION_BACKENDS = [
    *(
        ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
        if XROUTER_PASSWORD_LOGIN
        else []
    ),
    *(["accounts.sso.TeamMappingOidcBackend"] if XROUTER_SSO_ENABLED else []),
]

# --- E-mail (password reset) ------------------------------------------------
# SMTP when EMAIL_HOST names a server. Otherwise printed to stderr in DEBUG
# only: a reset mail holds a live token, so outside DEBUG it is dropped with
# a warning that names neither the link nor the address (xrouter_site.mail).
EMAIL_HOST = env_str("EMAIL_HOST")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
    EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
    EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
elif DEBUG:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
else:
    EMAIL_BACKEND = "xrouter_site.mail.DroppingEmailBackend"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "XRouter <noreply@localhost>")

# --- I18N -----------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("ru", _("Russian"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# The dashboard's hand-written CSS and JS.
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Security -------------------------------------------------------------
# Behind a TLS-terminating proxy set SECURE_PROXY_SSL_HEADER via
# XROUTER_BEHIND_TLS_PROXY=true; the HTTPS settings follow DEBUG.
if env_bool("XROUTER_BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
# /healthz and /readyz are probed over plain HTTP by orchestrators.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^v1/"]
# Prometheus scrapes /metrics over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT.append(r"^metrics$")
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# django-csp: everything from our own origin, no inline scripts, no framing
# (frame-ancestors is what browsers honour; X-Frame-Options is the fallback).
# Inline style *attributes* stay allowed (chart legend swatches); <style>
# elements and inline scripts do not. /v1/ answers are served before this
# middleware and carry routing.gateway.middleware.API_CSP. form-action is left
# out on purpose: Chrome applies it to the redirect after the OAuth
# consent form, which goes to the app's own origin.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
SESSION_COOKIE_HTTPONLY = True

# --- OAuth 2.0 authorization server (django-oauth-toolkit) -------------------
# Every non-default value says why; RFC 9700 is the OAuth Security BCP. The
# views, validator and scopes backend live in accounts/oauth/.
OAUTH2_PROVIDER = {
    "SCOPES": {
        "chat": "Call the models (/v1/) on your behalf",
        "keys:read": "Read your team's API keys",
        "keys:write": "Create, change and revoke your team's API keys",
        "usage:read": "Read your team's usage",
        "introspection": "Introspect tokens (resource servers only)",
    },
    # The default "__all__" would hand out every scope, introspection too.
    "DEFAULT_SCOPES": ["chat"],
    # Which application may ask for which scope (introspection: resource servers).
    "SCOPES_BACKEND_CLASS": "accounts.oauth.scopes.XRouterScopes",
    # Routes only the enabled grants: implicit/password/device are unsupported.
    "OAUTH2_SERVER_CLASS": "accounts.oauth.server.XRouterServer",
    # Code-reuse revocation, PKCE verifier syntax and downgrade checks.
    "OAUTH2_VALIDATOR_CLASS": "accounts.oauth.validators.XRouterOAuth2Validator",
    # RFC 6749 10.5: short codes; 60 s is DOT's default, kept explicit (<= 600).
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": 60,
    # RFC 9700 2.3: short-lived access tokens (DOT's default is 10 h).
    "ACCESS_TOKEN_EXPIRE_SECONDS": env_int("OAUTH_ACCESS_TOKEN_EXPIRE_SECONDS", 900),
    # Finite refresh lifetime (the default None never expires); 30 days.
    "REFRESH_TOKEN_EXPIRE_SECONDS": env_int("OAUTH_REFRESH_TOKEN_EXPIRE_SECONDS", 30 * 86400),
    # 0: a grace period needs plaintext tokens at rest (E001 with hashed storage).
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
    "ROTATE_REFRESH_TOKEN": True,
    # RFC 9700 4.14.2: replaying a rotated refresh token revokes its family.
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "PKCE_REQUIRED": True,
    # https only outside DEBUG. Loopback http (RFC 8252 7.3) is allowed by our
    # registration validator and authorization view, not by this list, so
    # the REDIRECT_URI_SCHEME gate below stays an error for plain http.
    "ALLOWED_REDIRECT_URI_SCHEMES": ["http", "https"] if DEBUG else ["https"],
    "ALLOW_URI_WILDCARDS": False,
    "ALLOW_LOCALHOST_LOOPBACK": False,
    "OIDC_ENABLED": False,
    # RFC 8414 metadata advertises only what is enabled (defaults list
    # implicit and password). Client credentials: resource servers only.
    "OAUTH2_RESPONSE_TYPES_SUPPORTED": ["code"],
    "OAUTH2_GRANT_TYPES_SUPPORTED": ["authorization_code", "refresh_token", "client_credentials"],
    # Public clients (PKCE, no secret) authenticate with "none".
    "OAUTH2_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED": [
        "client_secret_basic",
        "client_secret_post",
        "none",
    ],
    # RFC 9700 gates, all enforced (AUTH-18 runs check --deploy with them).
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_SCHEME": True,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_MATCHING": True,
    "COMPLIANT_BCP_RFC9700_PKCE_REQUIRED": True,
}

# --- REST framework (management API, not /v1/) ------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # First, so a 401 carries its "WWW-Authenticate: Bearer" header.
        "keys.authentication.ManagementKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # The same {"error": {...}} shape as /v1/.
    "EXCEPTION_HANDLER": "keys.api_errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "XRouter management API",
    "DESCRIPTION": (
        "The gateway (`/v1/`: OpenAI chat, completions, embeddings and Responses, "
        "Anthropic Messages) and the management API (`/api/v1/`: keys, key info, "
        "credits, the model catalog). `/v1/` takes an API key; the management API a "
        "management key (`Authorization: Bearer xr_live_...`, see `createapikey "
        "--management`) or a dashboard session."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Error answers on every operation, closed request bodies (keys.api_schema);
    # then the /v1/ gateway and the key exchange, plain Django views with
    # their own error dialects and open bodies (routing/gateway/surfaces/openapi.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "keys.api_schema.add_error_responses",
        "routing.gateway.surfaces.openapi.add_gateway_api",
    ],
    # A team's PII mode and a key's (which may also be "", the team's).
    "ENUM_NAME_OVERRIDES": {
        "PiiModeEnum": "accounts.models.PiiMode",
        "KeyPiiModeEnum": ["", "off", "redact", "block"],
    },
}

# --- XRouter gateway ------------------------------------------------------
# Declarative catalog (YAML) loaded at start-up; see README "Model catalog".
XROUTER_CATALOG = env_str("XROUTER_CATALOG")
# Request bodies above this size get 413 before they are read.
XROUTER_MAX_BODY_BYTES = env_int("XROUTER_MAX_BODY_BYTES", 4 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = XROUTER_MAX_BODY_BYTES
# "live" or "test": the environment part of newly issued keys.
XROUTER_KEY_ENV = env_str("XROUTER_KEY_ENV", "live")
# How long a worker trusts its in-process copy of a key (seconds). This is
# the revocation bound: a revoked key stops working everywhere within it.
XROUTER_KEY_LOCAL_TTL = env_float("XROUTER_KEY_LOCAL_TTL", 1.0)
# With a shared cache, how long a worker may keep an unchanged key: it reads
# the revocation announcements every XROUTER_KEY_LOCAL_TTL, so this bounds a
# revocation only when its announcement could not be written (logged).
XROUTER_KEY_LOCAL_MAX_AGE = env_float("XROUTER_KEY_LOCAL_MAX_AGE", 300.0)
# How long the shared cache keeps a resolved key; revocation deletes it.
XROUTER_KEY_SHARED_TTL = env_int("XROUTER_KEY_SHARED_TTL", 60)
# Upstream timeouts (seconds): connect, and read between two bytes.
XROUTER_UPSTREAM_CONNECT_TIMEOUT = env_float("XROUTER_UPSTREAM_CONNECT_TIMEOUT", 5.0)
XROUTER_UPSTREAM_READ_TIMEOUT = env_float("XROUTER_UPSTREAM_READ_TIMEOUT", 120.0)
# Upstream HTTP client (issue 19): "wire" (providers.wire: pooled sockets and
# a C parser, the measured faster one) or "requests" (the previous client,
# kept for comparison in the bench and as a fallback).
XROUTER_UPSTREAM_CLIENT = env_str("XROUTER_UPSTREAM_CLIENT", "wire")
if XROUTER_UPSTREAM_CLIENT not in ("wire", "requests"):
    raise ImproperlyConfigured(
        f"XROUTER_UPSTREAM_CLIENT must be 'wire' or 'requests', not {XROUTER_UPSTREAM_CLIENT!r}"
    )
# Outbound host policy for upstream calls (providers.outbound): checked when
# a provider is saved and on every new connection, after DNS resolution.
# Link-local and cloud-metadata addresses are always denied; loopback only
# with XROUTER_OUTBOUND_ALLOW_LOOPBACK (on in DEBUG: `make run`'s emulators).
XROUTER_OUTBOUND_ALLOW_LOOPBACK = env_bool("XROUTER_OUTBOUND_ALLOW_LOOPBACK", DEBUG)
# Extra denied networks (CIDRs) or host names, e.g. 10.0.0.0/8.
XROUTER_OUTBOUND_DENY = env_list("XROUTER_OUTBOUND_DENY", [])
# When set, the only host names upstreams may have (*.example.com allowed).
XROUTER_OUTBOUND_ALLOW_HOSTS = env_list("XROUTER_OUTBOUND_ALLOW_HOSTS", [])
# Connections kept per provider per worker (requests' pool size).
# Each open stream holds one, so this bounds the streams a worker relays
# without opening throwaway connections.
XROUTER_UPSTREAM_POOL_SIZE = env_int("XROUTER_UPSTREAM_POOL_SIZE", 2048)
# Reverse proxies whose X-Forwarded-For is believed (CIDRs, comma-separated).
# The client is the right-most hop that is not one of them; with none set
# the header is ignored (xrouter_site.client_ip). Every throttle, the login
# lockout and the /metrics allow-list use that address.
XROUTER_TRUSTED_PROXIES = env_list("XROUTER_TRUSTED_PROXIES", [])
if env_bool("XROUTER_TRUST_X_FORWARDED_FOR", False):
    # The old switch trusted nobody in particular and was never read.
    raise ImproperlyConfigured(
        "XROUTER_TRUST_X_FORWARDED_FOR is gone: list your proxies' addresses in "
        "XROUTER_TRUSTED_PROXIES (e.g. 10.0.0.0/8,127.0.0.1/32) instead."
    )
# django-ratelimit's "ip" key: the same client address.
RATELIMIT_IP_META_KEY = "xrouter_site.client_ip.client_ip"

# --- Limits -------------------------------------------------------------------
# Redis for rate limits and budgets (default: REDIS_URL). Its client waits
# at most XROUTER_LIMITER_TIMEOUT seconds: an outage must not stall requests.
XROUTER_LIMITER_REDIS_URL = env_str("XROUTER_LIMITER_REDIS_URL", REDIS_URL)
XROUTER_REDIS_CLUSTER = env_bool("XROUTER_REDIS_CLUSTER", False)
XROUTER_LIMITER_TIMEOUT = env_float("XROUTER_LIMITER_TIMEOUT", 0.05)
# After a Redis failure, use the in-process limiter this long before retrying.
XROUTER_LIMITER_RETRY_SECONDS = env_float("XROUTER_LIMITER_RETRY_SECONDS", 1.0)
# While Redis is down each process enforces limit / share (share = workers).
XROUTER_LIMITER_FALLBACK_SHARE = max(
    1, env_int("XROUTER_LIMITER_FALLBACK_SHARE", env_int("WEB_CONCURRENCY", 2))
)
# Settle limits (real tokens, released slots) from a background batch
# instead of a round trip per request; off in tests that read state at once.
XROUTER_LIMITER_ASYNC_SETTLE = env_bool("XROUTER_LIMITER_ASYNC_SETTLE", True)
# Pipeline the limit checks of concurrent requests (one round trip per batch).
XROUTER_LIMITER_BATCH = env_bool("XROUTER_LIMITER_BATCH", True)
# Budgets checked without Redis may be overshot by this fraction at most.
XROUTER_BUDGET_FAIL_OPEN_MARGIN = env_float("XROUTER_BUDGET_FAIL_OPEN_MARGIN", 0.05)
# Where the prompt estimate cannot decide a limit (routing/limits/prompt_size.py),
# the provider's counter is asked for at most this many seconds, and its
# answer is cached this long (by a digest of provider, model and messages).
XROUTER_TOKEN_COUNT_TIMEOUT = env_float("XROUTER_TOKEN_COUNT_TIMEOUT", 2.0)
XROUTER_TOKEN_COUNT_CACHE_SECONDS = env_int("XROUTER_TOKEN_COUNT_CACHE_SECONDS", 3600)
# Completion tokens reserved for a request that sets no max_tokens.
XROUTER_DEFAULT_COMPLETION_ESTIMATE = env_int("XROUTER_DEFAULT_COMPLETION_ESTIMATE", 1024)
# A request whose budget cannot cover its reservation is served with
# max_tokens capped to what the budget affords, down to this many tokens;
# below that it is refused (402).
XROUTER_BUDGET_MIN_COMPLETION_TOKENS = env_int("XROUTER_BUDGET_MIN_COMPLETION_TOKENS", 16)
# The largest max_tokens a request may ask for (a model's context_length,
# when the catalog gives one, bounds it further): larger gets a 400.
XROUTER_MAX_TOKENS_CAP = env_int("XROUTER_MAX_TOKENS_CAP", 262_144)
# Upstream usage above this many tokens per field (or above the model's
# context) is clamped and the record flagged: a provider's count is not
# trusted blindly (one claiming 10^12 tokens must not bill or break a batch).
XROUTER_USAGE_MAX_TOKENS = env_int("XROUTER_USAGE_MAX_TOKENS", 2_000_000)
# A concurrency slot expires this long after its last renewal.
XROUTER_LEASE_TTL_SECONDS = env_int("XROUTER_LEASE_TTL_SECONDS", 60)

# --- Usage records -------------------------------------------------------------
# With Redis, records go through a capped stream (durable across worker
# crashes) that every worker consumes; without it, a bounded in-process
# buffer flushed every XROUTER_USAGE_FLUSH_SECONDS.
XROUTER_USAGE_REDIS_URL = env_str("XROUTER_USAGE_REDIS_URL", REDIS_URL)
# Redis Cluster serves the limiter only: refuse, before anything runs, a
# cluster URL that the cache, the usage stream or Celery would also use.
_cluster_refusal = redis_connections.cluster_refusal(
    XROUTER_REDIS_CLUSTER,
    {
        "REDIS_URL": REDIS_URL,
        "XROUTER_USAGE_REDIS_URL": XROUTER_USAGE_REDIS_URL,
        "CELERY_BROKER_URL": env_str("CELERY_BROKER_URL"),
        "CELERY_RESULT_BACKEND": env_str("CELERY_RESULT_BACKEND"),
    },
    XROUTER_LIMITER_REDIS_URL,
)
if _cluster_refusal:
    raise ImproperlyConfigured(_cluster_refusal)
XROUTER_USAGE_STREAM_MAXLEN = env_int("XROUTER_USAGE_STREAM_MAXLEN", 1_000_000)
XROUTER_USAGE_CONSUMER = env_bool("XROUTER_USAGE_CONSUMER", True)
XROUTER_USAGE_CLAIM_IDLE_SECONDS = env_float("XROUTER_USAGE_CLAIM_IDLE_SECONDS", 30.0)
# Records per database INSERT, and the pause after a batch that did not fill
# (so under load batches grow instead of the consumer spinning on few rows).
XROUTER_USAGE_BATCH_SIZE = env_int("XROUTER_USAGE_BATCH_SIZE", 2000)
XROUTER_USAGE_CONSUME_PAUSE_SECONDS = env_float("XROUTER_USAGE_CONSUME_PAUSE_SECONDS", 0.25)
XROUTER_USAGE_BUFFER_SIZE = env_int("XROUTER_USAGE_BUFFER_SIZE", 100_000)
XROUTER_USAGE_FLUSH_SECONDS = env_float("XROUTER_USAGE_FLUSH_SECONDS", 1.0)
# Raw records are rolled up per UTC day (routing.usage.rollups) every
# XROUTER_USAGE_ROLLUP_SECONDS; the dashboard reads the roll-ups. Raw records
# older than XROUTER_USAGE_RETENTION_DAYS are deleted once rolled up (0 keeps
# them forever).
XROUTER_USAGE_ROLLUP_SECONDS = env_float("XROUTER_USAGE_ROLLUP_SECONDS", 300.0)
XROUTER_USAGE_RETENTION_DAYS = env_int("XROUTER_USAGE_RETENTION_DAYS", 90)
CELERY_BEAT_SCHEDULE["usage-rollup"] = {
    "task": "routing.usage_rollup_recent",
    "schedule": XROUTER_USAGE_ROLLUP_SECONDS,
}
CELERY_BEAT_SCHEDULE["usage-prune"] = {"task": "routing.usage_prune", "schedule": 3600.0}
# /v1/responses results stored for previous_response_id and GET: kept this
# many days (OpenAI keeps 30), then pruned hourly; 0 keeps them forever.
XROUTER_RESPONSES_RETENTION_DAYS = env_int("XROUTER_RESPONSES_RETENTION_DAYS", 30)
CELERY_BEAT_SCHEDULE["responses-prune"] = {"task": "routing.responses_prune", "schedule": 3600.0}
CELERY_BEAT_SCHEDULE["audit-purge"] = {"task": "routing.audit_purge", "schedule": 3600.0}
# Switches for measuring their cost (bench/): false skips writing usage
# records / recording Prometheus metrics on the request path. Keep both on
# in production: budgets are settled either way, but nothing is accounted.
XROUTER_USAGE_RECORDS_ENABLED = env_bool("XROUTER_USAGE_RECORDS_ENABLED", True)
XROUTER_METRICS_ENABLED = env_bool("XROUTER_METRICS_ENABLED", True)
# /metrics answers a bearer XROUTER_METRICS_TOKEN or a client address in
# XROUTER_METRICS_ALLOW (IPs or networks, comma-separated); with neither set
# only loopback may scrape. The address is xrouter_site.client_ip's: the
# peer, or behind XROUTER_TRUSTED_PROXIES the client they forwarded for.
XROUTER_METRICS_TOKEN = env_secret("XROUTER_METRICS_TOKEN")
XROUTER_METRICS_ALLOW = env_list("XROUTER_METRICS_ALLOW", [])

# --- Routing ---------------------------------------------------------------------
# Upstream attempts per request (the first included), and the wall-clock
# budget they all share; backoff between attempts is full-jitter exponential.
XROUTER_MAX_ATTEMPTS = env_int("XROUTER_MAX_ATTEMPTS", 3)
XROUTER_REQUEST_DEADLINE_SECONDS = env_float("XROUTER_REQUEST_DEADLINE_SECONDS", 300.0)
XROUTER_RETRY_BACKOFF_BASE_SECONDS = env_float("XROUTER_RETRY_BACKOFF_BASE_SECONDS", 0.025)
XROUTER_RETRY_BACKOFF_MAX_SECONDS = env_float("XROUTER_RETRY_BACKOFF_MAX_SECONDS", 1.0)
# Circuit breaker per deployment: open after N retryable failures within the
# window, for a cooldown that doubles on each re-opening.
XROUTER_BREAKER_FAILURES = env_int("XROUTER_BREAKER_FAILURES", 5)
XROUTER_BREAKER_WINDOW_SECONDS = env_float("XROUTER_BREAKER_WINDOW_SECONDS", 30.0)
XROUTER_BREAKER_COOLDOWN_SECONDS = env_float("XROUTER_BREAKER_COOLDOWN_SECONDS", 10.0)
XROUTER_BREAKER_MAX_COOLDOWN_SECONDS = env_float("XROUTER_BREAKER_MAX_COOLDOWN_SECONDS", 300.0)
XROUTER_BREAKER_PROBE_SECONDS = env_float("XROUTER_BREAKER_PROBE_SECONDS", 30.0)
# Health probes of every deployment (Celery beat, or in-process without a broker).
XROUTER_HEALTH_INTERVAL_SECONDS = env_float("XROUTER_HEALTH_INTERVAL_SECONDS", 30.0)
# Connect and read timeout of one probe: a probe must finish well inside its
# interval, whatever the request timeouts are (routing.probes).
XROUTER_HEALTH_TIMEOUT_SECONDS = env_float("XROUTER_HEALTH_TIMEOUT_SECONDS", 5.0)
CELERY_BEAT_SCHEDULE["deployment-health"] = {
    "task": "routing.tasks.probe_all_deployments",
    "schedule": XROUTER_HEALTH_INTERVAL_SECONDS,
    # A tick still queued when the next is due is dropped, not run late.
    "options": {"expires": XROUTER_HEALTH_INTERVAL_SECONDS},
}
# Run CELERY_BEAT_SCHEDULE in each gunicorn worker (xrouter_site.scheduler) when
# there is no broker, hence no beat; `manage.py serve` turns it on then.
XROUTER_INPROCESS_SCHEDULER = env_bool("XROUTER_INPROCESS_SCHEDULER", False)
# Slug of the team of `make run`'s demo key (set by `manage.py serve` when it
# emulates the providers): the first account signed up becomes its owner, so
# the new user sees the key and its usage. Empty: no team is joined.
XROUTER_DEMO_TEAM = env_str("XROUTER_DEMO_TEAM")

# Requests (streams included) one worker serves at once; more get 503 at
# once. Below gunicorn's worker_connections so the worker can still answer.
XROUTER_MAX_INFLIGHT_PER_WORKER = env_int("XROUTER_MAX_INFLIGHT_PER_WORKER", 3000)

# While this file exists /readyz answers 503 "draining": a preStop hook
# creates it so the pod leaves the load balancers before SIGTERM. gunicorn
# removes a stale one at start (deploy/gunicorn.conf.py). Empty: off.
XROUTER_DRAIN_FILE = env_str("XROUTER_DRAIN_FILE")

# Add an X-Served-By header with the worker's pid to /v1/ responses.
XROUTER_DEBUG_SERVED_BY = env_bool("XROUTER_DEBUG_SERVED_BY", False)

# --- Logging --------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "xrouter_site.logging.RedactSecretsFilter"}},
    "formatters": {"json": {"()": "xrouter_site.logging.JsonFormatter"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["redact"],
        },
        # The access line is built from fields the gateway controls (key
        # prefix, ids, numbers), never free text: it skips the redaction
        # regexes, which cost more than the rest of the line. Its handler
        # also writes the line without a LogRecord (xrouter_site.logging).
        "access": {"class": "xrouter_site.logging.AccessLineHandler", "formatter": "json"},
    },
    "root": {"handlers": ["stderr"], "level": LOG_LEVEL},
    "loggers": {
        # Access lines are INFO; keep them even when LOG_LEVEL is WARNING
        # unless explicitly silenced with XROUTER_ACCESS_LOG=false.
        "xrouter.access": {
            "level": "INFO" if env_bool("XROUTER_ACCESS_LOG", True) else "CRITICAL",
            "handlers": ["access"],
            "propagate": False,
        },
        # Django logs every 4xx here; the access log already has them.
        "django.request": {"level": "ERROR"},
        # urllib3 logs request lines (with query strings) at DEBUG.
        "urllib3": {"level": "WARNING"},
        # django-axes logs every failed login at INFO; lockouts are WARNING.
        "axes": {"level": "WARNING"},
        # Celery logs every task it ran at INFO (eager ones too: a health
        # probe per deployment every interval); failures are WARNING and up.
        "celery": {"level": "WARNING"},
        "kombu": {"level": "WARNING"},
    },
}

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(parents=True, exist_ok=True)

# How often the key "last used" times are written (one UPDATE per batch).
XROUTER_LAST_USED_FLUSH_SECONDS = env_float("XROUTER_LAST_USED_FLUSH_SECONDS", 10.0)
