"""Write operations on users and teams."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _

from accounts import roles
from accounts.audit.services import audit_diff, audit_record, audit_snapshot
from accounts.models import (
    AuditEvent,
    BudgetPeriod,
    DataPolicy,
    Invitation,
    Membership,
    PiiMode,
    Team,
    User,
)


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


def _audit_member(
    membership: Membership, action: str, changes: dict[str, object], actor: User | None = None
) -> None:
    audit_record(
        team=membership.team,
        action=action,
        target_type="member",
        target_id=str(membership.user_id),
        target_label=membership.user.get_username(),
        changes=changes,
        actor=actor,
    )


@transaction.atomic
def team_leave(*, membership: Membership) -> None:
    """Remove the membership's user from its team; the last owner cannot leave."""
    _lock_team(membership.team)
    if membership.role == Membership.Role.OWNER and _owner_count(membership.team) <= 1:
        raise ValidationError(
            _("You are the last owner. Make someone else an owner before leaving.")
        )
    _audit_member(
        membership,
        AuditEvent.Action.MEMBER_LEFT,
        {"role": {"before": membership.role, "after": None}},
        actor=membership.user,
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
    _audit_member(
        membership,
        AuditEvent.Action.MEMBER_REMOVED,
        {"role": {"before": membership.role, "after": None}},
        actor=by.user,
    )
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
    before = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    if before != role:
        _audit_member(
            membership,
            AuditEvent.Action.MEMBER_ROLE_CHANGED,
            {"role": {"before": before, "after": role}},
            actor=by.user,
        )
    return membership


def _invitation_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _invitation_action(role: str) -> roles.Action:
    return roles.Action.INVITE_OWNER if role == Membership.Role.OWNER else roles.Action.INVITE


@transaction.atomic
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
    audit_record(
        team=team,
        action=AuditEvent.Action.MEMBER_INVITED,
        target_type="invitation",
        target_id=str(invitation.public_id),
        target_label=email,
        changes={
            "role": {"before": None, "after": role},
            "email": {"before": None, "after": email},
        },
        actor=created_by,
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
    before = None if created else membership.role
    if not created and order.index(invitation.role) > order.index(membership.role):
        membership.role = invitation.role
        membership.save(update_fields=["role"])
    if before != membership.role:
        _audit_member(
            membership,
            AuditEvent.Action.MEMBER_JOINED,
            {"role": {"before": before, "after": membership.role}},
            actor=user,
        )
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
    before = audit_snapshot(team, changes)
    for name, value in changes.items():
        setattr(team, name, value)
    team.save(update_fields=sorted(changes))
    diff = audit_diff(before, audit_snapshot(team, changes))
    if diff:
        _audit_team(team, AuditEvent.Action.TEAM_DATA_HANDLING_CHANGED, diff)
    return team


def _audit_team(team: Team, action: str, changes: dict[str, object]) -> None:
    audit_record(
        team=team,
        action=action,
        target_type="team",
        target_id=team.slug,
        target_label=team.name,
        changes=changes,
    )


# --- Limits and budget ---------------------------------------------------------

TEAM_LIMIT_FIELDS = (
    "rpm_limit",
    "tpm_limit",
    "concurrency_limit",
    "default_key_rpm",
    "default_key_tpm",
    "default_key_concurrency",
)
TEAM_BUDGET_FIELDS = ("budget_rub", "budget_period")
# Sane maxima, checked here for every caller (the forms show the same).
MAX_RPM = 1_000_000
MAX_TPM = 1_000_000_000
MAX_CONCURRENCY = 100_000
MAX_BUDGET_RUB = Decimal("1000000000.00")
_LIMIT_MAXIMA = {
    "rpm_limit": MAX_RPM,
    "tpm_limit": MAX_TPM,
    "concurrency_limit": MAX_CONCURRENCY,
    "default_key_rpm": MAX_RPM,
    "default_key_tpm": MAX_TPM,
    "default_key_concurrency": MAX_CONCURRENCY,
}


def _clean_team_limits(changes: dict[str, Any]) -> dict[str, Any]:
    errors: dict[str, str] = {}
    for name, value in changes.items():
        if name in _LIMIT_MAXIMA:
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                errors[name] = _("Enter a whole number of at least 1, or leave it empty.")
            elif value > _LIMIT_MAXIMA[name]:
                errors[name] = _("At most %(max)s.") % {"max": f"{_LIMIT_MAXIMA[name]:,}"}
        elif name == "budget_rub":
            if value is None:
                continue
            if not isinstance(value, Decimal) or not value.is_finite():
                errors[name] = _("Enter an amount in roubles.")
            elif value < 0 or value > MAX_BUDGET_RUB:
                errors[name] = _("Enter an amount from 0 to %(max)s RUB.") % {
                    "max": f"{MAX_BUDGET_RUB:,.2f}"
                }
            elif value != value.quantize(Decimal("0.01")):
                errors[name] = _("Use at most two decimal places (kopecks).")
        elif name == "budget_period":
            if value not in BudgetPeriod.values:
                errors[name] = _("Unknown budget period.")
        else:
            errors[name] = _("This field cannot be changed here.")
    if errors:
        raise ValidationError(errors)
    return changes


@transaction.atomic
def team_limits_update(*, team: Team, by: User | None, **changes: Any) -> Team:
    """Change the team's caps, default key limits and budget on behalf of ``by``.

    ``by``'s current role must allow ``team.limits`` (accounts.roles), else
    :class:`accounts.roles.RoleDenied`; None is a management key or the
    system acting for the team. Only the given fields change; None clears
    a limit. Saving the team evicts its keys' cached principals
    (keys.auth), so the gateway applies the change to the next request
    within ``XROUTER_KEY_LOCAL_TTL``. The audit log gets one event for the
    caps and one for the budget, each with the fields that changed.
    """
    if by is not None:
        roles.credential_authorize(user=by, team=team, action=roles.Action.LIMITS_CHANGE)
    _clean_team_limits(changes)
    _lock_team(team)
    fields = TEAM_LIMIT_FIELDS + TEAM_BUDGET_FIELDS
    team.refresh_from_db(fields=list(fields))
    before = audit_snapshot(team, fields)
    for name, value in changes.items():
        setattr(team, name, value)
    team.full_clean(exclude=["slug", "name"])
    after = audit_snapshot(team, fields)
    changed = sorted(name for name in changes if before[name] != after[name])
    if not changed:
        return team
    team.save(update_fields=changed)
    for action, group in (
        (AuditEvent.Action.TEAM_LIMITS_CHANGED, TEAM_LIMIT_FIELDS),
        (AuditEvent.Action.TEAM_BUDGET_CHANGED, TEAM_BUDGET_FIELDS),
    ):
        diff = audit_diff({f: before[f] for f in group}, {f: after[f] for f in group})
        if diff:
            audit_record(
                team=team,
                action=action,
                target_type="team",
                target_id=team.slug,
                target_label=team.name,
                changes=diff,
                actor=by,
            )
    return team
