"""Write path of the OAuth server: apps, the hidden principal keys, revocation.

An access token with the ``chat`` scope acts through a hidden ``ApiKey`` of
kind ``oauth``, one per (application, user), bound to the team that was
current when the user consented. That key carries the limits and is what
usage is recorded against, so an OAuth app is limited exactly like a key.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from oauth2_provider.generators import generate_client_secret
from oauth2_provider.models import (
    AbstractApplication,
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_refresh_token_model,
)
from oauth2_provider.settings import oauth2_settings

from accounts import roles
from accounts.audit.services import audit_record
from accounts.models import AuditEvent, Team, User
from keys.models import ApiKey

logger = logging.getLogger(__name__)

Application = get_application_model()
AccessToken = get_access_token_model()
RefreshToken = get_refresh_token_model()
Grant = get_grant_model()

CHAT_SCOPE = "chat"
# Scopes that act for a team: granting any of them binds the grant to the
# team shown on the consent page (through the hidden ``oauth`` key).
TEAM_SCOPES = frozenset({CHAT_SCOPE, "keys:read", "keys:write", "usage:read"})
# Marks a redeemed authorization code (see oauth_code_mark_redeemed).
_REDEEMED_PREFIX = "redeemed:"


@dataclass(frozen=True)
class RegisteredApp:
    """A new application and its client secret (shown once; stored hashed)."""

    application: Any
    client_secret: str | None


def oauth_principal_digest(*, application_id: int, user_id: int) -> str:
    """Return the ``key_hash`` of the hidden key for (application, user).

    Derived, not random, so the token resolver finds the key from the
    token's row alone. The preimage is not secret and need not be: a hidden
    key has no plaintext, and the key resolver accepts only ``xr_`` keys of
    kind standard, so nothing can present this value as a credential.
    """
    return hashlib.sha256(
        f"xrouter-oauth-principal:{application_id}:{user_id}".encode()
    ).hexdigest()


def oauth_principal_retire(key: ApiKey) -> None:
    """Revoke hidden ``key`` and free its derived digest for a successor."""
    key.revoked_at = key.revoked_at or timezone.now()
    key.key_hash = hashlib.sha256(f"{key.key_hash}:retired:{key.pk}".encode()).hexdigest()
    key.save(update_fields=["revoked_at", "key_hash"])


@transaction.atomic
def oauth_principal_key_ensure(
    *, application: Any, user: User, team: Team, scopes: Iterable[str]
) -> ApiKey:
    """Return the live hidden key for (application, user) on ``team``.

    The user's role in ``team`` must allow consenting to every team-bound
    scope in ``scopes`` (accounts.roles), else :class:`accounts.roles.RoleDenied`.

    A key revoked in the dashboard, or one bound to another team (the user
    consented again from a different current team), is retired and a new one
    is created, so usage never mixes teams and a revocation stays final.
    The consent is written to the team's audit log.
    """
    scopes = sorted(set(scopes))
    membership = roles.credential_authorize(user=user, team=team, action=roles.Action.TEAM_READ)
    roles.require_consent(membership.role, scopes)
    digest = oauth_principal_digest(application_id=application.pk, user_id=user.pk)
    key = ApiKey.objects.select_for_update().filter(key_hash=digest).first()
    if key is not None and (key.team_id != team.pk or not key.is_usable()):
        oauth_principal_retire(key)
        key = None
    if key is None:
        key = ApiKey(
            team=team,
            name=f"OAuth: {application.name or application.client_id}"[:100],
            kind=ApiKey.Kind.OAUTH,
            created_by=user,
            key_hash=digest,
            prefix="oauth",
            last4=application.client_id[-4:],
        )
        key.full_clean()
        key.save()
    audit_record(
        team=team,
        action=AuditEvent.Action.OAUTH_APP_AUTHORIZED,
        target_type="oauth_app",
        target_id=application.client_id,
        target_label=application.name or application.client_id,
        changes={"scopes": {"before": None, "after": scopes}},
        actor=user,
    )
    return key


def oauth_application_register(
    *, name: str, redirect_uris: list[str], client_type: str, owner: User
) -> RegisteredApp:
    """Register an authorization-code application owned by ``owner``.

    ``redirect_uris`` must already be validated (accounts.oauth.forms): the
    model's own ``clean()`` would refuse the loopback http URIs that RFC
    8252 allows for native apps. A confidential client gets a secret,
    returned here once and stored hashed.
    """
    secret = (
        generate_client_secret() if client_type == AbstractApplication.CLIENT_CONFIDENTIAL else ""
    )
    application = Application.objects.create(
        name=name,
        user=owner,
        redirect_uris=" ".join(redirect_uris),
        client_type=client_type,
        authorization_grant_type=AbstractApplication.GRANT_AUTHORIZATION_CODE,
        client_secret=secret,
        hash_client_secret=True,
        skip_authorization=False,
        algorithm=AbstractApplication.NO_ALGORITHM,
    )
    return RegisteredApp(application=application, client_secret=secret or None)


@transaction.atomic
def oauth_authorization_revoke(*, application: Any, user: User) -> None:
    """Revoke every token ``user`` granted ``application`` (dashboard action).

    Refresh tokens are marked revoked (reuse detection needs them) and
    access tokens deleted; deleting evicts the token caches (oauth_tokens).
    """
    for refresh in RefreshToken.objects.filter(
        application=application, user=user, revoked__isnull=True
    ):
        refresh.revoke()
    AccessToken.objects.filter(application=application, user=user).delete()


@transaction.atomic
def oauth_application_delete(*, application: Any) -> None:
    """Delete an application; its tokens, grants and hidden keys go with it."""
    for key in ApiKey.objects.filter(
        kind=ApiKey.Kind.OAUTH, key_hash__in=_app_digests(application)
    ):
        oauth_principal_retire(key)
    application.delete()


def _app_digests(application: Any) -> list[str]:
    user_ids = set(
        AccessToken.objects.filter(application=application).values_list("user_id", flat=True)
    )
    user_ids |= set(
        RefreshToken.objects.filter(application=application).values_list("user_id", flat=True)
    )
    return [
        oauth_principal_digest(application_id=application.pk, user_id=uid)
        for uid in user_ids
        if uid is not None
    ]


def _redeemed_code(code: str) -> str:
    return _REDEEMED_PREFIX + hashlib.sha256(code.encode()).hexdigest()


def oauth_code_mark_redeemed(
    *, code: str, application: Any, access_token_id: int | None, token_family: str | None
) -> bool:
    """Consume ``code`` for ``application``; return False if it was already used.

    DOT deletes a redeemed grant, which forgets what it issued. The row is
    kept instead as a tombstone: its ``code`` becomes a hash (the plaintext
    code leaves the database) and the OIDC-only ``claims`` column, unused
    with OIDC off, records what was issued, so a replay can revoke it (RFC
    6749 10.5). A single UPDATE decides races: PostgreSQL re-checks the
    WHERE clause after the winner commits, so exactly one caller sees 1 row.
    The tombstone lives as long as a refresh token could.
    """
    lifetime = oauth2_settings.REFRESH_TOKEN_EXPIRE_SECONDS or 86400
    updated = Grant.objects.filter(code=code, application=application).update(
        code=_redeemed_code(code),
        expires=timezone.now() + timedelta(seconds=lifetime),
        claims=json.dumps({"access_token_id": access_token_id, "token_family": token_family}),
    )
    return updated == 1


def oauth_code_reuse_revoke(*, code: str, application: Any) -> bool:
    """Revoke what a redeemed ``code`` issued; return True if it had been redeemed."""
    tombstone = Grant.objects.filter(code=_redeemed_code(code), application=application).first()
    if tombstone is None:
        return False
    issued = json.loads(tombstone.claims or "{}")
    logger.warning(
        "authorization code replayed; revoking its tokens",
        extra={"client_id": application.client_id, "grant_id": tombstone.pk},
    )
    oauth_issued_revoke(
        access_token_id=issued.get("access_token_id"), token_family=issued.get("token_family")
    )
    return True


def oauth_issued_revoke(*, access_token_id: int | None, token_family: str | None) -> None:
    """Revoke one access token and the refresh-token family it started."""
    with transaction.atomic():
        if token_family:
            RefreshToken.revoke_family(token_family)
        if access_token_id:
            AccessToken.objects.filter(pk=access_token_id).delete()


def oauth_resource_server_register(*, name: str) -> RegisteredApp:
    """Register a resource server: client credentials, ``introspection`` only."""
    secret = generate_client_secret()
    application = Application.objects.create(
        name=name,
        redirect_uris="",
        client_type=AbstractApplication.CLIENT_CONFIDENTIAL,
        authorization_grant_type=AbstractApplication.GRANT_CLIENT_CREDENTIALS,
        client_secret=secret,
        hash_client_secret=True,
    )
    return RegisteredApp(application=application, client_secret=secret)
