"""The model catalog: upstream providers, public models and deployments.

A public model (what clients put in ``model``) is served by one or more
deployments, each an upstream model name at one provider. Rows loaded from
the catalog file are marked ``managed`` so a reload can retire what the file
no longer lists without touching rows an operator added in the admin.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from providers.registry import PROVIDER_KINDS

_ENV_NAME = RegexValidator(r"^[A-Z_][A-Z0-9_]*$", _("an environment variable name"))
_MODEL_ID = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._\-]*(/[A-Za-z0-9._\-]+)*(:[A-Za-z0-9._\-]+)?$",
    _("a model id like provider/model or provider/model:version"),
)


def validate_base_url(value: str) -> None:
    """Accept http(s) URLs with any host name, including cluster-internal
    ones without dots (``http://vllm:8000/v1``) that URLValidator refuses."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(_("Enter an http:// or https:// URL with a host."))
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValidationError(_("The URL must not carry credentials, a query or a fragment."))


def _kind_choices() -> list[tuple[str, str]]:
    return [(kind, kind) for kind in sorted(PROVIDER_KINDS)]


class Provider(models.Model):
    name = models.SlugField(_("name"), max_length=64, unique=True)
    kind = models.CharField(_("kind"), max_length=32, choices=_kind_choices)
    base_url = models.CharField(_("base URL"), max_length=500, validators=[validate_base_url])
    # The credential itself never enters the database: only the name of the
    # environment variable (or mounted secret) that holds it.
    api_key_env = models.CharField(
        _("credential env var"), max_length=100, blank=True, validators=[_ENV_NAME]
    )
    options = models.JSONField(_("options"), default=dict, blank=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    managed = models.BooleanField(
        _("managed by the catalog file"), default=False, editable=False
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("provider")
        verbose_name_plural = _("providers")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Model(models.Model):
    class Type(models.TextChoices):
        CHAT = "chat", _("Chat")
        EMBEDDING = "embedding", _("Embedding")

    model_id = models.CharField(
        _("model id"), max_length=200, unique=True, validators=[_MODEL_ID]
    )
    display_name = models.CharField(_("display name"), max_length=200, blank=True)
    type = models.CharField(_("type"), max_length=16, choices=Type.choices, default=Type.CHAT)
    context_length = models.PositiveIntegerField(_("context length"), null=True, blank=True)
    # Prices in RUB per 1,000 tokens; null when unknown.
    prompt_price = models.DecimalField(
        _("prompt price, RUB / 1K tokens"),
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
    )
    completion_price = models.DecimalField(
        _("completion price, RUB / 1K tokens"),
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    managed = models.BooleanField(
        _("managed by the catalog file"), default=False, editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("model")
        verbose_name_plural = _("models")
        ordering = ["model_id"]

    def __str__(self) -> str:
        return self.model_id


class Deployment(models.Model):
    """One way to serve a public model: an upstream model at a provider."""

    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="deployments")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="deployments")
    upstream = models.CharField(_("upstream model"), max_length=200)
    # Lower priority is tried first; weight splits load within a priority.
    priority = models.PositiveSmallIntegerField(_("priority"), default=0)
    weight = models.PositiveSmallIntegerField(_("weight"), default=1)
    enabled = models.BooleanField(_("enabled"), default=True)

    class Meta:
        verbose_name = _("deployment")
        verbose_name_plural = _("deployments")
        ordering = ["model", "priority", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "provider", "upstream"], name="uniq_deployment"
            )
        ]

    def __str__(self) -> str:
        return f"{self.model} via {self.provider}/{self.upstream}"
