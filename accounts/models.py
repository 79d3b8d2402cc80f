"""Users and teams.

A team owns API keys, limits and usage; users belong to teams through
memberships with a role.
"""

from __future__ import annotations

import json
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


class DataPolicy(models.TextChoices):
    """Where a team's requests may go (routing/residency.py enforces it).

    ``ru_only`` keeps every request on deployments whose ``data_region`` is
    ``ru``; ``ru_no_retention`` also needs ``stores_prompts: false``.
    """

    ANY = "any", _("Any deployment")
    RU_ONLY = "ru_only", _("Only deployments in Russia")
    RU_NO_RETENTION = "ru_no_retention", _("Only deployments in Russia that keep no request data")


class PiiMode(models.TextChoices):
    """What the PII guardrail (routing/pii/) does with a prompt's personal data."""

    OFF = "off", _("Off")
    REDACT = "redact", _("Redact before the provider, restore in the answer")
    BLOCK = "block", _("Refuse requests that contain personal data")


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
    # Data handling (152-FZ): which deployments may see the team's requests,
    # and what happens to personal data found in prompts. The database
    # defaults let the previous release insert rows during a rolling deploy.
    data_policy = models.CharField(
        _("data policy"),
        max_length=20,
        choices=DataPolicy.choices,
        default=DataPolicy.ANY,
        db_default=DataPolicy.ANY,
    )
    pii_mode = models.CharField(
        _("personal data in prompts"),
        max_length=10,
        choices=PiiMode.choices,
        default=PiiMode.OFF,
        db_default=PiiMode.OFF,
    )

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


class AuditEvent(models.Model):
    """One change to a team's keys, limits, members or app access.

    Written by ``accounts.audit.services.audit_record`` in the same
    transaction as the change it describes. ``changes`` holds only the
    fields that changed, as ``{"field": {"before": x, "after": y}}``; secrets
    and key plaintexts never go in. The actor is kept twice: the user (None
    for a management key, or once the user is deleted) and a label written
    at the time, so the record still says who it was.
    """

    class Action(models.TextChoices):
        KEY_CREATED = "key.created", _("Key created")
        KEY_ROTATED = "key.rotated", _("Key rotated")
        KEY_REVOKED = "key.revoked", _("Key revoked")
        KEY_LIMITS_CHANGED = "key.limits_changed", _("Key limits changed")
        KEY_UPDATED = "key.updated", _("Key settings changed")
        TEAM_LIMITS_CHANGED = "team.limits_changed", _("Team limits changed")
        TEAM_BUDGET_CHANGED = "team.budget_changed", _("Team budget changed")
        TEAM_DATA_HANDLING_CHANGED = "team.data_handling_changed", _("Data handling changed")
        MEMBER_INVITED = "member.invited", _("Member invited")
        MEMBER_JOINED = "member.joined", _("Member joined")
        MEMBER_REMOVED = "member.removed", _("Member removed")
        MEMBER_LEFT = "member.left", _("Member left")
        MEMBER_ROLE_CHANGED = "member.role_changed", _("Member role changed")
        OAUTH_APP_AUTHORIZED = "oauth.app_authorized", _("OAuth app authorised")

    class ActorKind(models.TextChoices):
        USER = "user", _("User")
        MANAGEMENT_KEY = "management_key", _("Management key")
        SYSTEM = "system", _("System")

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="audit_events")
    created_at = models.DateTimeField(_("time"), default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    actor_kind = models.CharField(
        _("actor kind"), max_length=20, choices=ActorKind.choices, default=ActorKind.SYSTEM
    )
    actor_label = models.CharField(_("actor"), max_length=200, blank=True)
    client_ip = models.GenericIPAddressField(_("client IP"), null=True, blank=True)
    action = models.CharField(_("action"), max_length=40, choices=Action.choices)
    target_type = models.CharField(_("target type"), max_length=20)
    target_id = models.CharField(_("target id"), max_length=64, blank=True)
    target_label = models.CharField(_("target"), max_length=200, blank=True)
    changes = models.JSONField(_("changes"), default=dict, blank=True)

    class Meta:
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["team", "-created_at"], name="audit_team_created"),
            models.Index(fields=["created_at"], name="audit_created"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.target_label} by {self.actor_label or self.actor_kind}"

    def change_rows(self) -> list[tuple[str, str, str]]:
        """Return ``(field, before, after)`` as text, for the dashboard."""

        def text(value: Any) -> str:
            if value is None or value == "" or value == [] or value == {}:
                return "—"
            if isinstance(value, str):
                return value
            return json.dumps(value, ensure_ascii=False, sort_keys=True)

        rows = []
        for name, change in sorted((self.changes or {}).items()):
            if isinstance(change, dict) and set(change) <= {"before", "after"}:
                rows.append((name, text(change.get("before")), text(change.get("after"))))
            else:
                rows.append((name, "—", text(change)))
        return rows
