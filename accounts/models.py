"""Users and teams.

A team owns API keys, limits and usage; users belong to teams through
memberships with a role.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class User(AbstractUser):
    """The project's user model (swapped in before the first migration)."""

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")


class BudgetPeriod(models.TextChoices):
    """When a budget starts over (in TIME_ZONE; weeks start on Monday)."""

    DAILY = "daily", _("Daily")
    WEEKLY = "weekly", _("Weekly")
    MONTHLY = "monthly", _("Monthly")
    NEVER = "never", _("Never")


def _limit_field(label: Any) -> models.PositiveIntegerField:
    return models.PositiveIntegerField(
        label, null=True, blank=True, validators=[MinValueValidator(1)]
    )


class Team(models.Model):
    name = models.CharField(_("name"), max_length=100)
    slug = models.SlugField(_("slug"), max_length=50, unique=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="teams"
    )
    # Caps on the whole team, shared by all its keys (routing.limits.plan).
    rpm_limit = _limit_field(_("team requests per minute"))
    tpm_limit = _limit_field(_("team tokens per minute"))
    concurrency_limit = _limit_field(_("team concurrent requests"))
    budget_rub = models.DecimalField(
        _("team budget, RUB"),
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
    )
    budget_period = models.CharField(
        _("team budget period"),
        max_length=10,
        choices=BudgetPeriod.choices,
        default=BudgetPeriod.MONTHLY,
    )
    # Limits for each key that sets none of its own.
    default_key_rpm = _limit_field(_("default requests per minute per key"))
    default_key_tpm = _limit_field(_("default tokens per minute per key"))
    default_key_concurrency = _limit_field(_("default concurrent requests per key"))

    class Meta:
        verbose_name = _("team")
        verbose_name_plural = _("teams")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", _("Owner")
        ADMIN = "admin", _("Admin")
        MEMBER = "member", _("Member")

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(_("role"), max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(_("joined"), auto_now_add=True)

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="uniq_membership_team_user")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"

    @property
    def can_manage(self) -> bool:
        """Return True if this member may create, change or revoke keys and invite."""
        return self.role in (self.Role.OWNER, self.Role.ADMIN)


class Invitation(models.Model):
    """A single-use, expiring link that adds its holder to a team.

    Only the SHA-256 of the link's token is stored, like API keys: a
    database reader cannot join a team with what it finds here.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="invitations")
    role = models.CharField(
        _("role"), max_length=10, choices=Membership.Role.choices, default=Membership.Role.MEMBER
    )
    # Informational only: anyone holding the link may accept it.
    email = models.EmailField(_("e-mail"), blank=True)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    expires_at = models.DateTimeField(_("expires"))
    accepted_at = models.DateTimeField(_("accepted"), null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)

    class Meta:
        verbose_name = _("invitation")
        verbose_name_plural = _("invitations")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.team} ({self.role})"

    def is_pending(self) -> bool:
        """Return True if the invitation can still be accepted."""
        return (
            self.accepted_at is None
            and self.revoked_at is None
            and self.expires_at > timezone.now()
        )


class KeyExchangeCode(models.Model):
    """A one-time code of the ``/auth`` key exchange (accounts.oauth.exchange).

    Kept in the database, not the cache: without Redis each worker has its
    own memory cache, and a code issued by one worker was unknown to the
    worker that got the redemption. Only the code's SHA-256 is stored.
    """

    code_hash = models.CharField(max_length=64, primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    challenge = models.CharField(max_length=64)
    origin = models.CharField(max_length=300)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = _("key exchange code")
        verbose_name_plural = _("key exchange codes")

    def __str__(self) -> str:
        return f"exchange code for {self.origin} (expires {self.expires_at:%Y-%m-%d %H:%M:%S})"
