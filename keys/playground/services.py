"""Playground keys: what the playground page calls ``/v1/`` with.

Only a hash of a key is stored, so the dashboard cannot reuse one of the
team's keys on a user's behalf. Instead the page asks for a key of its own:
a standard key of the current team, created by the signed-in user (so the
role matrix decides, as for any key, and it is revoked with the user's
other keys when they leave or are demoted), expiring after
``XROUTER_PLAYGROUND_KEY_TTL_MINUTES``, labelled ``playground`` wherever
keys are listed. Its requests go through the same limits, budgets and usage
records as any other key's. The plaintext goes to the browser once and
lives only in the page's memory.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts import roles
from accounts.models import Team, User
from keys.models import ApiKey
from keys.services import CreatedKey, api_key_create, api_key_revoke

#: Live playground keys one user may hold per team (one per open tab, about);
#: minting another revokes the oldest.
MAX_LIVE_PER_USER = 3


def playground_key_name(user: User) -> str:
    """Return the name a user's playground keys carry in the key list."""
    return f"Playground · {user.get_username()}"[:100]


@transaction.atomic
def playground_key_mint(*, team: Team, user: User) -> CreatedKey:
    """Create a playground key of ``team`` for ``user`` and return its plaintext.

    Raises :class:`accounts.roles.RoleDenied` unless the user's current role
    may create keys: a playground key spends the team's money like any key.
    The user's expired playground keys are revoked (they would count towards
    the team's key cap forever), and so are all but the newest
    ``MAX_LIVE_PER_USER - 1`` live ones.
    """
    roles.credential_authorize(user=user, team=team, action=roles.Action.KEY_CREATE)
    now = timezone.now()
    held = list(
        ApiKey.objects.select_for_update()
        .filter(team=team, created_by=user, playground=True, revoked_at__isnull=True)
        .order_by("-created_at", "-pk")
    )
    live = [key for key in held if not key.is_expired(now)]
    for key in [key for key in held if key.is_expired(now)] + live[MAX_LIVE_PER_USER - 1 :]:
        # One by one: save() is what evicts the cached principal (keys.auth).
        api_key_revoke(api_key=key)
    return api_key_create(
        team=team,
        name=playground_key_name(user),
        created_by=user,
        expires_at=now + timedelta(minutes=settings.XROUTER_PLAYGROUND_KEY_TTL_MINUTES),
        playground=True,
    )


def playground_keys_revoke(*, team: Team, user: User) -> int:
    """Revoke every playground key ``user`` holds in ``team``; return how many."""
    keys = ApiKey.objects.filter(
        team=team, created_by=user, playground=True, revoked_at__isnull=True
    )
    count = 0
    for key in keys:
        api_key_revoke(api_key=key)
        count += 1
    return count
