"""The role matrix: what an owner, an admin and a member of a team may do.

This module is the one place that says which role may do what. Every path
that creates a credential asks :func:`require` (through
:func:`credential_authorize`) before it writes anything:

- API keys, standard and management: ``keys.services.api_key_create`` (the
  dashboard, ``POST /api/v1/keys``, rotation and the ``/auth`` key exchange
  all go through it);
- OAuth consent: ``accounts.oauth.services.oauth_principal_key_ensure`` and
  the authorization view, per requested scope (:func:`consent_action`).

Views ask :func:`allows` only to hide buttons; the services decide. The
README's "Roles" table is this matrix, and ``tests/accounts/test_roles.py``
checks that the two agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from django.core.exceptions import PermissionDenied
from django.utils.translation import gettext_lazy as _

from accounts.models import Membership, Team, User

Role = Membership.Role


class Action(StrEnum):
    """Everything a team member can be allowed to do."""

    TEAM_READ = "team.read"  # keys (masked), usage, members, models
    KEY_CREATE = "key.create"  # standard and management keys, /auth exchange, rotation
    KEY_CHANGE = "key.change"  # edit limits/models/expiry, disable, revoke
    CONSENT_CHAT = "consent.chat"  # let an OAuth app call /v1/ as the team
    CONSENT_KEYS_READ = "consent.keys:read"
    CONSENT_KEYS_WRITE = "consent.keys:write"
    CONSENT_USAGE_READ = "consent.usage:read"
    APP_REGISTER = "app.register"  # register or delete an OAuth application
    INVITE = "member.invite"  # invitations with the role member or admin
    INVITE_OWNER = "member.invite_owner"
    MEMBER_MANAGE = "member.manage"  # remove members and admins, change their role
    OWNER_MANAGE = "member.manage_owner"  # grant, take away or remove the owner role
    LIMITS_CHANGE = "team.limits"  # team caps, default key limits, team budget
    AUDIT_READ = "audit.read"  # the team's audit log


_MANAGERS = frozenset({Role.OWNER, Role.ADMIN})
_EVERYONE = frozenset({Role.OWNER, Role.ADMIN, Role.MEMBER})

MATRIX: dict[Action, frozenset[str]] = {
    Action.TEAM_READ: _EVERYONE,
    Action.KEY_CREATE: _MANAGERS,
    Action.KEY_CHANGE: _MANAGERS,
    Action.CONSENT_CHAT: _MANAGERS,
    Action.CONSENT_KEYS_READ: _EVERYONE,
    Action.CONSENT_KEYS_WRITE: _MANAGERS,
    Action.CONSENT_USAGE_READ: _EVERYONE,
    Action.APP_REGISTER: _MANAGERS,
    Action.INVITE: _MANAGERS,
    Action.INVITE_OWNER: frozenset({Role.OWNER}),
    Action.MEMBER_MANAGE: _MANAGERS,
    Action.OWNER_MANAGE: frozenset({Role.OWNER}),
    Action.LIMITS_CHANGE: _MANAGERS,
    Action.AUDIT_READ: _MANAGERS,
}

# OAuth scope -> the action consenting to it needs. Scopes that do not act
# for a team (``introspection``, resource servers only) are not listed.
CONSENT_ACTIONS: dict[str, Action] = {
    "chat": Action.CONSENT_CHAT,
    "keys:read": Action.CONSENT_KEYS_READ,
    "keys:write": Action.CONSENT_KEYS_WRITE,
    "usage:read": Action.CONSENT_USAGE_READ,
}

_MESSAGES: dict[Action, Any] = {
    Action.KEY_CREATE: _("Only team owners and admins can create keys."),
    Action.KEY_CHANGE: _("Only team owners and admins can change keys."),
    Action.CONSENT_CHAT: _("Only team owners and admins can give an app access to the models."),
    Action.CONSENT_KEYS_WRITE: _("Only team owners and admins can let an app change keys."),
    Action.APP_REGISTER: _("Only team owners and admins can register applications."),
    Action.INVITE: _("Only team owners and admins can invite."),
    Action.INVITE_OWNER: _("Only owners can invite owners."),
    Action.MEMBER_MANAGE: _("Only team owners and admins can manage members."),
    Action.OWNER_MANAGE: _("Only an owner can grant, remove or take away the owner role."),
    Action.LIMITS_CHANGE: _("Only team owners and admins can change limits and budgets."),
    Action.AUDIT_READ: _("Only team owners and admins can read the audit log."),
}


class RoleDenied(PermissionDenied):
    """The caller's role does not allow ``action``; ``str()`` says so plainly."""

    def __init__(self, action: Action) -> None:
        self.action = action
        fallback = _("Your role in this team does not allow this.")
        super().__init__(str(_MESSAGES.get(action, fallback)))


def allows(role: str | None, action: Action) -> bool:
    """Return True if ``role`` may perform ``action`` (None: not a member)."""
    return role is not None and role in MATRIX[action]


def require(role: str | None, action: Action) -> None:
    """Raise :class:`RoleDenied` unless ``role`` may perform ``action``."""
    if not allows(role, action):
        raise RoleDenied(action)


def consent_action(scope: str) -> Action | None:
    """Return the action consenting to ``scope`` needs (None: not team-bound)."""
    return CONSENT_ACTIONS.get(scope)


def consentable_scopes(role: str | None) -> frozenset[str]:
    """Return the team-bound scopes ``role`` may consent to (and hold)."""
    return frozenset(s for s, action in CONSENT_ACTIONS.items() if allows(role, action))


def require_consent(role: str | None, scopes: Iterable[str]) -> None:
    """Raise :class:`RoleDenied` for the first scope ``role`` may not consent to."""
    for scope in scopes:
        action = consent_action(scope)
        if action is not None:
            require(role, action)


def credential_authorize(*, user: User, team: Team, action: Action) -> Membership:
    """Return ``user``'s membership of ``team`` if its role allows ``action``.

    Reads the role from the database, not from a session or a token, so a
    demotion that committed a moment ago already counts. A user outside the
    team (removed, or never in it) is refused like a role that falls short.
    """
    membership = Membership.objects.filter(team=team, user=user, user__is_active=True).first()
    require(membership.role if membership else None, action)
    assert membership is not None  # require() refused None
    return membership
