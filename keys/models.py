"""API keys: what a team presents to call the gateway.

Only a SHA-256 digest of a key is stored, with a short display prefix and the
last four characters; the plaintext exists once, in the response that
created it (see :mod:`keys.tokens` for the format).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import BudgetPeriod, PiiMode


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def active(self, now: datetime | None = None) -> ApiKeyQuerySet:
        now = now or timezone.now()
        return self.filter(revoked_at__isnull=True, disabled=False).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiKey(models.Model):
    class Kind(models.TextChoices):
        # Standard keys call the gateway (/v1/); management keys call the
        # management API (/api/v1/). Neither is accepted by the other API,
        # so a leaked script key cannot spend tokens and vice versa.
        STANDARD = "standard", _("Standard")
        MANAGEMENT = "management", _("Management")
        # Hidden: the principal an OAuth access token with the "chat" scope
        # acts as (accounts/oauth/tokens.py); it carries the limits and is
        # what usage is keyed by. Never has a plaintext of its own.
        OAUTH = "oauth", _("OAuth app")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(_("name"), max_length=100)
    kind = models.CharField(
        _("kind"), max_length=16, choices=Kind.choices, default=Kind.STANDARD, editable=False
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    # sha256(plaintext) in hex; the only way a key is looked up.
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    # "xr_live_AbCd": enough for a person to tell keys apart, useless to use.
    prefix = models.CharField(_("prefix"), max_length=16, editable=False)
    last4 = models.CharField(max_length=4, editable=False)

    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)
    disabled = models.BooleanField(_("disabled"), default=False)

    # Public model ids this key may call; empty means every catalog model.
    # An entry without ":version" allows every version of that model.
    allowed_models = models.JSONField(_("allowed models"), default=list, blank=True)
    rpm_limit = models.PositiveIntegerField(
        _("requests per minute"), null=True, blank=True, validators=[MinValueValidator(1)]
    )
    tpm_limit = models.PositiveIntegerField(
        _("tokens per minute"), null=True, blank=True, validators=[MinValueValidator(1)]
    )
    budget_rub = models.DecimalField(
        _("budget, RUB"),
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
    )
    budget_period = models.CharField(
        _("budget period"),
        max_length=10,
        choices=BudgetPeriod.choices,
        default=BudgetPeriod.MONTHLY,
    )
    concurrency_limit = models.PositiveIntegerField(
        _("concurrent requests"), null=True, blank=True, validators=[MinValueValidator(1)]
    )
    # Per-model overrides: {"model id": {"rpm": N, "tpm": N, "concurrency": N}}.
    model_limits = models.JSONField(_("per-model limits"), default=dict, blank=True)
    # Overrides the team's pii_mode for this key; blank means the team's.
    pii_mode = models.CharField(
        _("personal data in prompts"),
        max_length=10,
        choices=PiiMode.choices,
        blank=True,
        default="",
        db_default="",
    )

    # Minted by the dashboard's playground for its user (keys/playground/):
    # a standard key that always expires, labelled as such wherever keys are
    # listed. The database default lets the previous release insert rows
    # during a rolling deploy.
    playground = models.BooleanField(
        _("playground key"), default=False, db_default=False, editable=False
    )

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["team", "-created_at"], name="apikey_team_created")]

    def __str__(self) -> str:
        return f"{self.name} ({self.masked})"

    @property
    def masked(self) -> str:
        return f"{self.prefix}…{self.last4}"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())

    def is_usable(self, now: datetime | None = None) -> bool:
        return not (self.is_revoked or self.disabled or self.is_expired(now))

    @property
    def is_management(self) -> bool:
        return self.kind == self.Kind.MANAGEMENT

    def status(self, now: datetime | None = None) -> str:
        """Return ``revoked``, ``expired``, ``disabled`` or ``active``.

        Revocation wins over expiry: a revoked key stays revoked whatever
        its expiry says.
        """
        if self.is_revoked:
            return "revoked"
        if self.is_expired(now):
            return "expired"
        if self.disabled:
            return "disabled"
        return "active"
