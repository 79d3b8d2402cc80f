"""A real OpenID Connect provider for the SSO tests, in its own process.

django-oauth-toolkit with OIDC on (RS256 ID tokens, JWKS, userinfo, PKCE)
in a minimal Django project with a SQLite database in a temporary folder,
served by wsgiref on a loopback port. Users and their groups come from the
command line, so a test decides who exists:

    python tests/sso_idp.py --port 0 --redirect-uri http://127.0.0.1:8081/accounts/sso/callback/ \\
        --client-id xr --client-secret s3cret --user anna:anna@corp.example:pw:acme-admins,staff

It prints ``READY <port>`` once it serves, then runs until killed. Claims:
``email``, ``email_verified`` (true), ``preferred_username`` and
``groups`` (a list).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import django
from django.conf import settings
from django.urls import include, path

LOGIN_TEMPLATE = """<!doctype html><title>Corp ID</title><h1>Corp ID sign-in</h1>
<form method="post">{% csrf_token %}
<label>Username <input name="username" id="idp-username"></label>
<label>Password <input name="password" type="password" id="idp-password"></label>
<input type="hidden" name="next" value="{{ next }}">
<button type="submit" id="idp-submit">Sign in</button></form>
{% if form.errors %}<p id="idp-error">Wrong username or password.</p>{% endif %}"""


def _validator_class() -> type:
    from oauth2_provider.oauth2_validators import OAuth2Validator

    class GroupsValidator(OAuth2Validator):
        oidc_claim_scope = {
            **OAuth2Validator.oidc_claim_scope,
            "groups": "profile",
            "email_verified": "email",
        }

        def get_additional_claims(self, request: Any) -> dict[str, Any]:
            user = request.user
            return {
                "email": user.email,
                "email_verified": True,
                "preferred_username": user.username,
                "groups": sorted(user.groups.values_list("name", flat=True)),
            }

    return GroupsValidator


def _configure(folder: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    settings.configure(
        DEBUG=False,
        SECRET_KEY="idp-test-only-" + "x" * 40,
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "oauth2_provider",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        DATABASES={
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(folder / "idp.sqlite3")}
        },
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "OPTIONS": {
                    "loaders": [
                        (
                            "django.template.loaders.locmem.Loader",
                            {"idp/login.html": LOGIN_TEMPLATE},
                        ),
                        "django.template.loaders.app_directories.Loader",
                    ],
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ],
                },
            }
        ],
        LOGIN_URL="/login/",
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        OAUTH2_PROVIDER={
            "OIDC_ENABLED": True,
            "OIDC_RSA_PRIVATE_KEY": pem,
            "PKCE_REQUIRED": True,
            "SCOPES": {"openid": "OpenID", "email": "E-mail", "profile": "Profile"},
            "OAUTH2_VALIDATOR_CLASS": f"{__name__}.GroupsValidator",
        },
    )


def _login_view() -> Any:
    from django.contrib.auth import views as auth_views

    return auth_views.LoginView.as_view(template_name="idp/login.html")


urlpatterns: list[Any] = []


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--redirect-uri", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument(
        "--user", action="append", default=[], help="name:email:password:group,group"
    )
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="xr-idp-"))
    _configure(folder)
    django.setup()
    globals()["GroupsValidator"] = _validator_class()
    urlpatterns.extend(
        [
            path("login/", _login_view()),
            path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
        ]
    )

    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from oauth2_provider.models import Application

    call_command("migrate", verbosity=0, interactive=False)
    for spec in args.user:
        name, email, password, groups = spec.split(":", 3)
        user = User.objects.create_user(name, email=email, password=password)
        for group in filter(None, groups.split(",")):
            user.groups.add(Group.objects.get_or_create(name=group)[0])
    Application.objects.create(
        name="XRouter",
        client_id=args.client_id,
        client_secret=args.client_secret,
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=args.redirect_uri,
        algorithm=Application.RS256_ALGORITHM,
        skip_authorization=True,
    )

    from django.core.wsgi import get_wsgi_application

    server = make_server(
        "127.0.0.1", args.port, get_wsgi_application(), _ThreadingServer, _QuietHandler
    )
    print(f"READY {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
