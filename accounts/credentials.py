"""Revoke what a member holds once their role no longer allows it.

A membership that is deleted (removed, left, deleted in ``/admin/``) or
whose role goes down takes with it, in the same transaction as the change:

- the API keys (standard and management) the user created in that team,
  when the new role may not create keys (:data:`accounts.roles.Action.KEY_CREATE`);
- the OAuth consents the user gave for that team (hidden ``oauth`` key
  retired, refresh tokens revoked, access tokens and pending codes deleted),
  when they hold a scope the new role may not consent to;
- the pending invitations the user created for that team, when the new
  role may not issue them.

The receivers below run on every save or delete of a ``Membership``, so
no path (dashboard, service, admin, shell) can skip them. A key that must
outlive its creator's departure is rotated by someone who stays first:
rotation makes the rotating user its creator.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver
from django.utils import timezone
from oauth2_provider.models import (
    get_access_token_model,
    get_grant_model,
    get_refresh_token_model,
)

from accounts import roles
from accounts.models import Invitation, Membership
from accounts.oauth.services import oauth_principal_digest, oauth_principal_retire
from keys.models import ApiKey

logger = logging.getLogger(__name__)

AccessToken = get_access_token_model()
RefreshToken = get_refresh_token_model()
Grant = get_grant_model()

# accounts.oauth.services marks redeemed codes with this prefix; they are
# kept to detect replays and hold no credential.
_REDEEMED_PREFIX = "redeemed:"


@dataclass
class Revoked:
    """What :func:`membership_credentials_revoke` took away (for logs and tests)."""

    key_ids: list[int] = field(default_factory=list)
    oauth_application_ids: list[int] = field(default_factory=list)
    invitation_ids: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.key_ids or self.oauth_application_ids or self.invitation_ids)


def _revoke_keys(*, team_id: int, user_id: int) -> list[int]:
    revoked = []
    now = timezone.now()
    keys = ApiKey.objects.select_for_update().filter(
        team_id=team_id,
        created_by_id=user_id,
        kind__in=[ApiKey.Kind.STANDARD, ApiKey.Kind.MANAGEMENT],
        revoked_at__isnull=True,
    )
    for key in keys:
        key.revoked_at = now
        # save() (not update()) so keys.auth evicts the cached principal.
        key.save(update_fields=["revoked_at"])
        revoked.append(key.pk)
    return revoked


def _held_scopes(*, application_id: int, user_id: int) -> set[str]:
    scopes: set[str] = set()
    for scope in AccessToken.objects.filter(
        application_id=application_id, user_id=user_id
    ).values_list("scope", flat=True):
        scopes.update(scope.split())
    for scope in (
        Grant.objects.filter(application_id=application_id, user_id=user_id)
        .exclude(code__startswith=_REDEEMED_PREFIX)
        .values_list("scope", flat=True)
    ):
        scopes.update(scope.split())
    for refresh in RefreshToken.objects.select_related("access_token").filter(
        application_id=application_id, user_id=user_id, revoked__isnull=True
    ):
        if refresh.access_token is not None:
            scopes.update(refresh.access_token.scope.split())
        else:
            # Its access token expired and was cleaned up; what it may
            # refresh into is unknown, so count it as every scope.
            scopes.update(roles.CONSENT_ACTIONS)
    return scopes


def oauth_consent_revoke(*, application_id: int, user_id: int) -> None:
    """Revoke every token and pending code ``user`` granted the application."""
    for refresh in RefreshToken.objects.filter(
        application_id=application_id, user_id=user_id, revoked__isnull=True
    ):
        refresh.revoke()
    # delete() per row: the post_delete receivers evict the token caches.
    for access in AccessToken.objects.filter(application_id=application_id, user_id=user_id):
        access.delete()
    Grant.objects.filter(application_id=application_id, user_id=user_id).exclude(
        code__startswith=_REDEEMED_PREFIX
    ).delete()


def _revoke_oauth(*, team_id: int, user_id: int, role: str | None) -> list[int]:
    allowed = roles.consentable_scopes(role)
    application_ids = set(
        AccessToken.objects.filter(user_id=user_id).values_list("application_id", flat=True)
    )
    application_ids |= set(
        RefreshToken.objects.filter(user_id=user_id).values_list("application_id", flat=True)
    )
    application_ids |= set(
        Grant.objects.filter(user_id=user_id).values_list("application_id", flat=True)
    )
    revoked = []
    for application_id in sorted(a for a in application_ids if a is not None):
        digest = oauth_principal_digest(application_id=application_id, user_id=user_id)
        binding = (
            ApiKey.objects.select_for_update()
            .filter(key_hash=digest, kind=ApiKey.Kind.OAUTH, team_id=team_id)
            .first()
        )
        if binding is None:
            # Bound to another team (or never bound): not this team's to revoke.
            continue
        held = _held_scopes(application_id=application_id, user_id=user_id)
        if role is not None and held <= allowed:
            continue
        oauth_principal_retire(binding)
        oauth_consent_revoke(application_id=application_id, user_id=user_id)
        revoked.append(application_id)
    return revoked


def _revoke_invitations(*, team_id: int, user_id: int, role: str | None) -> list[int]:
    pending = Invitation.objects.select_for_update().filter(
        team_id=team_id, created_by_id=user_id, accepted_at__isnull=True, revoked_at__isnull=True
    )
    if roles.allows(role, roles.Action.INVITE_OWNER):
        return []
    if roles.allows(role, roles.Action.INVITE):
        pending = pending.filter(role=Membership.Role.OWNER)
    ids = list(pending.values_list("pk", flat=True))
    Invitation.objects.filter(pk__in=ids).update(revoked_at=timezone.now())
    return ids


@transaction.atomic
def membership_credentials_revoke(*, team_id: int, user_id: int, role: str | None) -> Revoked:
    """Revoke what ``user`` holds in the team beyond what ``role`` allows.

    ``role`` is the new role, or None when the user left the team.
    """
    revoked = Revoked()
    if not roles.allows(role, roles.Action.KEY_CREATE):
        revoked.key_ids = _revoke_keys(team_id=team_id, user_id=user_id)
    revoked.oauth_application_ids = _revoke_oauth(team_id=team_id, user_id=user_id, role=role)
    revoked.invitation_ids = _revoke_invitations(team_id=team_id, user_id=user_id, role=role)
    if revoked:
        logger.info(
            "credentials revoked after a membership change",
            extra={
                "team_id": team_id,
                "user_id": user_id,
                "role": role,
                "key_ids": revoked.key_ids,
                "oauth_application_ids": revoked.oauth_application_ids,
                "invitation_ids": revoked.invitation_ids,
            },
        )
    return revoked


# --- receivers -------------------------------------------------------------------


@receiver(pre_save, sender=Membership)
def _remember_old_role(sender: type[Membership], instance: Membership, **kwargs: Any) -> None:
    instance._xr_old_role = (  # type: ignore[attr-defined]
        Membership.objects.filter(pk=instance.pk).values_list("role", flat=True).first()
        if instance.pk
        else None
    )


@receiver(post_save, sender=Membership)
def _revoke_on_role_change(
    sender: type[Membership], instance: Membership, created: bool, **kwargs: Any
) -> None:
    old = getattr(instance, "_xr_old_role", None)
    if created or old is None or old == instance.role:
        return
    membership_credentials_revoke(
        team_id=instance.team_id, user_id=instance.user_id, role=str(instance.role)
    )


@receiver(post_delete, sender=Membership)
def _revoke_on_removal(sender: type[Membership], instance: Membership, **kwargs: Any) -> None:
    membership_credentials_revoke(team_id=instance.team_id, user_id=instance.user_id, role=None)
