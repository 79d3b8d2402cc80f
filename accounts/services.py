"""Write operations on users and teams."""

from __future__ import annotations

from django.db import transaction
from django.utils.text import slugify

from accounts.models import Membership, Team, User


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
