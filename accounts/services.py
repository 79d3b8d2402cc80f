"""Write operations on users and teams."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _

from accounts import roles
from accounts.models import DataPolicy, Invitation, Membership, PiiMode, Team, User


def team_get_or_create(*, slug: str, name: str | None = None) -> tuple[Team, bool]:
    """Return the team with ``slug``, creating it (named ``name``) if needed."""
    slug = slugify(slug)
    if not slug:
        raise ValueError("a team slug needs at least one letter or digit")
    return Team.objects.get_or_create(slug=slug, defaults={"name": name or slug})


@transaction.atomic
def team_add_member(*, team: Team, user: User, role: str = Membership.Role.MEMBER) -> Membership:
    membership, created = Membership.objects.get_or_create(
        team=team, user=user, defaults={"role": role}
    )
    if not created and membership.role != role:
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


# --- Sign-up, teams, invitations and membership changes --------------------
# Each raises django.core.exceptions.ValidationError with a message meant
# for the person who asked; views show it as is.


@dataclass(frozen=True)
class CreatedInvitation:
    """A new invitation and its token, which exists only in the link."""

    invitation: Invitation
    token: str


@transaction.atomic
def user_signup(*, username: str, email: str, password: str) -> User:
    """Create an active user with a hashed password.

    With ``XROUTER_DEMO_TEAM`` set (``make run`` on emulators), the first
    account signed up becomes the owner of that team while it has no
    members, so the demo key printed at start-up is on its dashboard.
    """
    user = User.objects.create_user(username=username, email=email, password=password)
    slug = settings.XROUTER_DEMO_TEAM
    if slug:
        # Locked: two first sign-ups at once cannot both become its owner.
        team = Team.objects.select_for_update().filter(slug=slug).first()
        if team is not None and not Membership.objects.filter(team=team).exists():
            Membership.objects.create(team=team, user=user, role=Membership.Role.OWNER)
    return user


def _unique_slug(name: str) -> str:
    base = slugify(name)[:40] or "team"
    slug = base
    while Team.objects.filter(slug=slug).exists():
        slug = f"{base}-{secrets.token_hex(3)}"
    return slug


@transaction.atomic
def team_create(*, name: str, owner: User) -> Team:
    """Create a team named ``name`` with ``owner`` as its first owner."""
    name = name.strip()
    if not name:
        raise ValidationError(_("A team needs a name."))
    team = Team.objects.create(name=name, slug=_unique_slug(name))
    Membership.objects.create(team=team, user=owner, role=Membership.Role.OWNER)
    return team


def _owner_count(team: Team) -> int:
    return Membership.objects.filter(team=team, role=Membership.Role.OWNER).count()


def _lock_team(team: Team) -> None:
    # Serialises membership changes per team so two owners leaving at once
    # cannot both pass the "another owner remains" check.
    Team.objects.select_for_update().filter(pk=team.pk).first()


@transaction.atomic
def team_leave(*, membership: Membership) -> None:
    """Remove the membership's user from its team; the last owner cannot leave."""
    _lock_team(membership.team)
    if membership.role == Membership.Role.OWNER and _owner_count(membership.team) <= 1:
        raise ValidationError(
            _("You are the last owner. Make someone else an owner before leaving.")
        )
    membership.delete()


@transaction.atomic
def team_member_remove(*, membership: Membership, by: Membership) -> None:
    """Remove ``membership`` on behalf of ``by`` (an owner or admin of the team).

    Admins may remove members and admins but not owners; the last owner is
    never removed.
    """
    if by.team_id != membership.team_id or not by.can_manage:
        raise PermissionDenied
    if membership.pk == by.pk:
        team_leave(membership=membership)
        return
    _lock_team(membership.team)
    if membership.role == Membership.Role.OWNER:
        if by.role != Membership.Role.OWNER:
            raise ValidationError(_("Only an owner can remove another owner."))
        if _owner_count(membership.team) <= 1:
            raise ValidationError(_("The last owner cannot be removed."))
    membership.delete()


@transaction.atomic
def team_member_set_role(*, membership: Membership, role: str, by: Membership) -> Membership:
    """Change a member's role on behalf of ``by``.

    Only owners grant or take away the owner role, and the last owner keeps it.
    """
    if role not in Membership.Role.values:
        raise ValidationError(_("Unknown role."))
    if by.team_id != membership.team_id or not by.can_manage:
        raise PermissionDenied
    _lock_team(membership.team)
    touches_owner = Membership.Role.OWNER in (role, membership.role)
    if touches_owner and by.role != Membership.Role.OWNER:
        raise ValidationError(_("Only an owner can grant or remove the owner role."))
    if (
        membership.role == Membership.Role.OWNER
        and role != Membership.Role.OWNER
        and _owner_count(membership.team) <= 1
    ):
        raise ValidationError(_("The last owner cannot be demoted."))
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


def _invitation_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _invitation_action(role: str) -> roles.Action:
    return roles.Action.INVITE_OWNER if role == Membership.Role.OWNER else roles.Action.INVITE


def team_invitation_create(
    *, team: Team, created_by: User, role: str = Membership.Role.MEMBER, email: str = ""
) -> CreatedInvitation:
    """Create a single-use invitation link valid for ``XROUTER_INVITATION_TTL_HOURS``.

    ``created_by``'s role must allow inviting with ``role`` (accounts.roles),
    else :class:`accounts.roles.RoleDenied`.
    """
    if role not in Membership.Role.values:
        raise ValidationError(_("Unknown role."))
    roles.credential_authorize(user=created_by, team=team, action=_invitation_action(role))
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        team=team,
        role=role,
        email=email,
        token_hash=_invitation_digest(token),
        created_by=created_by,
        expires_at=timezone.now() + timedelta(hours=settings.XROUTER_INVITATION_TTL_HOURS),
    )
    return CreatedInvitation(invitation=invitation, token=token)


def _issuer_may_still(invitation: Invitation) -> bool:
    """Return True if the invitation's creator may still issue it.

    accounts.credentials revokes an invitation when its creator is removed
    or demoted; this covers the rest (a deleted or deactivated creator, a
    change made before that existed) when the link is used.
    """
    if invitation.created_by_id is None:
        return False
    role = (
        Membership.objects.filter(
            team_id=invitation.team_id,
            user_id=invitation.created_by_id,
            user__is_active=True,
        )
        .values_list("role", flat=True)
        .first()
    )
    return roles.allows(role, _invitation_action(invitation.role))


def team_invitation_get(*, token: str) -> Invitation | None:
    """Return the pending invitation for ``token``, or None."""
    invitation = (
        Invitation.objects.select_related("team")
        .filter(token_hash=_invitation_digest(token))
        .first()
    )
    if invitation is None or not invitation.is_pending() or not _issuer_may_still(invitation):
        return None
    return invitation


@transaction.atomic
def team_invitation_accept(*, token: str, user: User) -> Membership:
    """Join the invitation's team as ``user`` and use the invitation up.

    An existing member keeps their role when it is higher than the invited one.
    """
    invitation = (
        Invitation.objects.select_for_update()
        .select_related("team")
        .filter(token_hash=_invitation_digest(token))
        .first()
    )
    # One message for unknown, used, revoked and expired links: no oracle.
    if invitation is None or not invitation.is_pending() or not _issuer_may_still(invitation):
        raise ValidationError(_("This invitation link is invalid, used or expired."))
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    membership, created = Membership.objects.get_or_create(
        team=invitation.team, user=user, defaults={"role": invitation.role}
    )
    order: list[str] = [Membership.Role.MEMBER, Membership.Role.ADMIN, Membership.Role.OWNER]
    if not created and order.index(invitation.role) > order.index(membership.role):
        membership.role = invitation.role
        membership.save(update_fields=["role"])
    return membership


def team_invitation_revoke(*, invitation: Invitation) -> None:
    """Make a pending invitation unusable."""
    if invitation.revoked_at is None and invitation.accepted_at is None:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])


# --- Data handling: residency policy and PII guardrail ---------------------

_STRICTNESS = {
    "data_policy": list(DataPolicy.values),  # any < ru_only < ru_no_retention
    "pii_mode": list(PiiMode.values),  # off < redact < block
}


@transaction.atomic
def team_data_handling_update(
    *,
    team: Team,
    role: str | None,
    data_policy: str | None = None,
    pii_mode: str | None = None,
) -> Team:
    """Change the team's ``data_policy`` and/or ``pii_mode`` on behalf of ``role``.

    Owners may set any value. Anyone else who manages the team (admins, and
    management keys, which have no role) may only tighten: loosening a
    compliance setting is an owner's decision. Saving the team evicts its
    keys' cached principals, so every worker applies the change within the
    key cache's bound (``XROUTER_KEY_LOCAL_TTL``).
    """
    _lock_team(team)
    team.refresh_from_db(fields=["data_policy", "pii_mode"])
    changes = {
        name: value
        for name, value in (("data_policy", data_policy), ("pii_mode", pii_mode))
        if value is not None
    }
    for name, value in changes.items():
        order = _STRICTNESS[name]
        if value not in order:
            raise ValidationError({name: _("Unknown value %(value)s.") % {"value": value}})
        loosens = order.index(value) < order.index(getattr(team, name))
        if loosens and role != Membership.Role.OWNER:
            raise PermissionDenied(
                _("Only a team owner can loosen the %(setting)s.") % {"setting": name}
            )
    if not changes:
        return team
    for name, value in changes.items():
        setattr(team, name, value)
    team.save(update_fields=sorted(changes))
    return team
