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

from providers.outbound import OutboundRefused, current_policy
from providers.registry import PROVIDER_KINDS

# XRouter's own secrets: never sent to an upstream, whatever a catalog says.
PLATFORM_SECRET_ENVS = frozenset(
    {
        "SECRET_KEY",
        "SECRET_KEY_FALLBACKS",
        "DATABASE_URL",
        "REDIS_URL",
        "CELERY_BROKER_URL",
        "CELERY_RESULT_BACKEND",
        "XROUTER_LIMITER_REDIS_URL",
        "XROUTER_USAGE_REDIS_URL",
        "EMAIL_HOST_PASSWORD",
        "XROUTER_METRICS_TOKEN",
    }
)
_ENV_NAME = RegexValidator(r"^[A-Z_][A-Z0-9_]*$", _("an environment variable name"))
_MODEL_ID = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._\-]*(/[A-Za-z0-9._\-]+)*(:[A-Za-z0-9._\-]+)?$",
    _("a model id like provider/model or provider/model:version"),
)

_REGION = RegexValidator(r"^[a-z]{2}$", _("an ISO 3166-1 alpha-2 code in lower case, like ru"))


def validate_base_url(value: str) -> None:
    """Accept http(s) URLs with any host name, including cluster-internal
    ones without dots (``http://vllm:8000/v1``) that URLValidator refuses."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(_("Enter an http:// or https:// URL with a host."))
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValidationError(_("The URL must not carry credentials, a query or a fragment."))
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
        # Metadata and link-local hosts, loopback unless allowed, the
        # operator's deny list (providers.outbound); again at call time.
        current_policy().check_url(value)
    except OutboundRefused as exc:
        raise ValidationError(str(exc)) from None
    except ValueError:
        raise ValidationError(_("Enter an http:// or https:// URL with a host.")) from None


def validate_credential_env(value: str) -> None:
    """Refuse the platform's own secrets as a provider credential variable."""
    if value.upper().removesuffix("_FILE") in PLATFORM_SECRET_ENVS:
        raise ValidationError(
            _("%(name)s holds XRouter's own secret; it cannot be a provider credential.")
            % {"name": value}
        )


def _kind_choices() -> list[tuple[str, str]]:
    return [(kind, kind) for kind in sorted(PROVIDER_KINDS)]


class Provider(models.Model):
    name = models.SlugField(_("name"), max_length=64, unique=True)
    kind = models.CharField(_("kind"), max_length=32, choices=_kind_choices)
    base_url = models.CharField(_("base URL"), max_length=500, validators=[validate_base_url])
    # The credential itself never enters the database: only the name of the
    # environment variable (or mounted secret) that holds it.
    api_key_env = models.CharField(
        _("credential env var"),
        max_length=100,
        blank=True,
        validators=[_ENV_NAME],
    )
    options = models.JSONField(_("options"), default=dict, blank=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    managed = models.BooleanField(_("managed by the catalog file"), default=False, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("provider")
        verbose_name_plural = _("providers")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """Refuse the platform's own secrets as the credential variable."""
        if self.api_key_env:
            try:
                validate_credential_env(self.api_key_env)
            except ValidationError as exc:
                raise ValidationError({"api_key_env": exc.messages}) from None

    def credential_problem(self) -> str:
        """Return why this provider may not read its credential variable, or ''.

        Credentials come only from variables the catalog file declares: a
        provider the file manages reads the one the file names for it; one
        added in /admin/ gets none (issue 15, Medium 6). Checked when the
        routing table is built, whatever is in the row.
        """
        if not self.api_key_env:
            return ""
        if self.api_key_env.upper().removesuffix("_FILE") in PLATFORM_SECRET_ENVS:
            return f"{self.api_key_env} holds XRouter's own secret"
        if not self.managed:
            return "credential variables are declared in the catalog file only"
        return ""


class Model(models.Model):
    class Type(models.TextChoices):
        CHAT = "chat", _("Chat")
        EMBEDDING = "embedding", _("Embedding")

    model_id = models.CharField(_("model id"), max_length=200, unique=True, validators=[_MODEL_ID])
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
    # Versioned ids (``vendor/model:branch``, see routing/versions.py): the
    # branch's lifecycle, so clients get deprecation headers and operators
    # see when a release candidate becomes latest.
    deprecated = models.BooleanField(_("deprecated"), default=False)
    version_since = models.DateField(_("version available since"), null=True, blank=True)
    version_until = models.DateField(
        _("version changes on"),
        null=True,
        blank=True,
        help_text=_("rc: promotion to latest; deprecated: withdrawal (Sunset)."),
    )
    upstream_version = models.CharField(_("announced upstream build"), max_length=64, blank=True)
    # Other public model ids to try, in order, when every deployment of this
    # one fails; a model with fallbacks and no deployments is an alias.
    fallbacks = models.JSONField(_("fallbacks"), default=list, blank=True)
    # Per-key defaults for this model (a key's own model_limits override them).
    key_rpm_limit = models.PositiveIntegerField(
        _("requests per minute per key"), null=True, blank=True, validators=[MinValueValidator(1)]
    )
    key_tpm_limit = models.PositiveIntegerField(
        _("tokens per minute per key"), null=True, blank=True, validators=[MinValueValidator(1)]
    )
    key_concurrency_limit = models.PositiveIntegerField(
        _("concurrent requests per key"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    managed = models.BooleanField(_("managed by the catalog file"), default=False, editable=False)
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
    # Where the upstream processes and keeps requests (ISO 3166-1 alpha-2,
    # lower case; blank: not declared, which no residency policy accepts)
    # and whether the provider retains request data. Team data policies
    # (routing/residency.py) route on these two.
    data_region = models.CharField(
        _("data region"), max_length=2, blank=True, validators=[_REGION], db_default=""
    )
    stores_prompts = models.BooleanField(_("stores prompts"), default=True, db_default=True)
    # Request parameters this deployment honours (providers.base.PARAMETERS);
    # null means the defaults of its provider's kind.
    supported_parameters = models.JSONField(
        _("supported parameters"), null=True, blank=True, default=None
    )

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


class UsageRecord(models.Model):
    """What one request did and cost; written in batches off the hot path.

    ``generation_id`` is the gateway's own id of the request (``gen-...``,
    the response ``id``): unique (through ``request_id``, below), so a
    redelivered record is inserted once, and no client can choose it. ``correlation_id`` is the
    ``X-Request-ID`` the client saw echoed (its own when sane): searchable,
    never a key. ``upstream_id`` is the provider's response id, kept for
    support and never shown as ours. ``attempts`` keeps the chain of
    upstream attempts (provider, status, error) when routing fell back; only
    the attempt that served is billed. ``usage_anomaly`` says what was
    clamped when the provider reported implausible usage.

    ``request_id`` is the old unique key, kept for one release so workers
    of the previous release (which insert ``ON CONFLICT (request_id)``) keep
    working during a rolling deploy; this release writes the generation id
    into it. The contract release drops it (see migration 0007).
    """

    request_id = models.CharField(max_length=128, unique=True)
    # Indexed where set (rows of the previous release, which have none, cost
    # the index nothing). NULL, not "", marks "none": the index condition and
    # the backfill need the difference.
    generation_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    # Database defaults, so inserts of the previous release (which name none
    # of these columns) keep working during a rolling deploy.
    correlation_id = models.CharField(max_length=128, blank=True, db_default="")
    upstream_id = models.CharField(max_length=200, blank=True, db_default="")
    usage_anomaly = models.CharField(max_length=200, blank=True, db_default="")
    created_at = models.DateTimeField(db_index=True)
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="+")
    key = models.ForeignKey(
        "keys.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    oauth_app = models.CharField(max_length=100, blank=True)
    endpoint = models.CharField(max_length=32)
    requested_model = models.CharField(max_length=200)
    served_model = models.CharField(max_length=200, blank=True)
    model_version = models.CharField(max_length=100, blank=True)
    provider = models.CharField(max_length=64, blank=True)
    deployment_id = models.BigIntegerField(null=True, blank=True)
    attempts = models.JSONField(default=list, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    cost_rub = models.DecimalField(max_digits=16, decimal_places=6, default=0)
    status = models.PositiveSmallIntegerField()
    error_code = models.CharField(max_length=64, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    stream = models.BooleanField(default=False)
    # None for non-streams; False when the stream ended early (partial).
    stream_complete = models.BooleanField(null=True, blank=True)
    # OpenAI's finish reason of the served answer; "content_filter" marks an
    # answer the provider's filter cut or replaced. The database default lets
    # workers that predate the column keep inserting during a rolling deploy.
    finish_reason = models.CharField(max_length=32, blank=True, default="", db_default="")
    # Personal data the PII guardrail found, as counts by kind only
    # ({"phone": 2, "inn": 1}); never the values.
    # The database default lets workers of the previous release, which do
    # not write the column, keep inserting during a rolling deploy.
    pii_counts = models.JSONField(
        default=dict, blank=True, db_default=models.Value({}, output_field=models.JSONField())
    )

    class Meta:
        verbose_name = _("usage record")
        verbose_name_plural = _("usage records")
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["team", "-created_at"], name="usage_team_created"),
            models.Index(fields=["key", "-created_at"], name="usage_key_created"),
            models.Index(
                fields=["team", "correlation_id"],
                condition=~models.Q(correlation_id=""),
                name="usage_team_correlation",
            ),
            # Not unique in the database during the expand release: the
            # unique legacy request_id column carries the same value.
            models.Index(
                fields=["generation_id"],
                condition=models.Q(generation_id__isnull=False),
                name="usage_generation",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.generation} {self.served_model or self.requested_model} {self.status}"

    @property
    def generation(self) -> str:
        """Return the record's id (rows written by an older release lack one)."""
        return self.generation_id or self.request_id


class LimiterEntry(models.Model):
    """One entry of the database limiter, used when there is no Redis.

    A request in a sliding-window log (``weight`` 1, or its tokens), a
    concurrency lease, or (``member`` empty) a budget counter in
    micro-roubles; ``expires_ms`` is when it stops counting, in Unix
    milliseconds. See :mod:`routing.limits.database`.
    """

    limit_key = models.CharField(max_length=255)
    member = models.CharField(max_length=64)
    weight = models.BigIntegerField()
    expires_ms = models.BigIntegerField()

    class Meta:
        verbose_name = _("limiter entry")
        verbose_name_plural = _("limiter entries")
        constraints = [
            models.UniqueConstraint(fields=["limit_key", "member"], name="limiter_key_member")
        ]
        indexes = [
            models.Index(fields=["limit_key", "expires_ms"], name="limiter_key_expires"),
            models.Index(fields=["expires_ms"], name="limiter_expires"),
        ]

    def __str__(self) -> str:
        return f"{self.limit_key} {self.member or 'counter'} {self.weight}"


class UsageDaily(models.Model):
    """One day of usage for one (team, key, model, provider), from raw records.

    Built by :func:`routing.usage.rollups.usage_rollup_day`, which replaces a whole
    day at once, so re-running it never double-counts. ``latency_histogram``
    holds request counts per bucket of :data:`routing.usage.rollups.LATENCY_BOUNDS_MS`
    (plus one overflow bucket); histograms of several rows add up, so
    percentiles of any grouping (a model over all keys, a week) stay exact to
    the bucket instead of averaging per-row percentiles.
    """

    day = models.DateField()
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="+")
    key = models.ForeignKey(
        "keys.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The served model, or the requested one when nothing was served.
    model = models.CharField(max_length=200)
    provider = models.CharField(max_length=64, blank=True)
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    cost_rub = models.DecimalField(max_digits=20, decimal_places=6, default=0)
    latency_ms_sum = models.BigIntegerField(default=0)
    latency_p50_ms = models.PositiveIntegerField(default=0)
    latency_p95_ms = models.PositiveIntegerField(default=0)
    latency_histogram = models.JSONField(default=list)

    class Meta:
        verbose_name = _("daily usage")
        verbose_name_plural = _("daily usage")
        ordering = ["-day"]
        indexes = [
            # Every dashboard query is "this team, these days".
            models.Index(fields=["team", "day"], name="usage_daily_team_day"),
            models.Index(fields=["day"], name="usage_daily_day"),
        ]

    def __str__(self) -> str:
        return f"{self.day} team={self.team_id} {self.model} {self.requests}"


class UsageRollupDay(models.Model):
    """When a day was last rolled up and whether its raw records are gone.

    Retention deletes raw records only of days rolled up after they ended,
    and a pruned day is never rolled up again (that would replace its
    roll-up with an empty one).
    """

    day = models.DateField(unique=True)
    rolled_at = models.DateTimeField()
    records = models.PositiveIntegerField(default=0)
    pruned = models.BooleanField(default=False)

    class Meta:
        verbose_name = _("usage roll-up day")
        verbose_name_plural = _("usage roll-up days")
        ordering = ["-day"]

    def __str__(self) -> str:
        return f"{self.day} rolled {self.rolled_at:%Y-%m-%d %H:%M}"


class StoredResponse(models.Model):
    """A ``/v1/responses`` result kept for ``previous_response_id`` and GET.

    Team-scoped: every lookup filters by the caller's team, so another
    team's id reads exactly like one that does not exist. ``conversation``
    is the chain's messages up to and including this reply (internal chat
    messages as JSON, instructions excluded: they do not carry over), so a
    continuation is one row read. Rows older than
    ``XROUTER_RESPONSES_RETENTION_DAYS`` are invisible and pruned hourly.
    """

    response_id = models.CharField(max_length=80, unique=True)
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="+")
    key = models.ForeignKey(
        "keys.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    model = models.CharField(max_length=200)
    previous_response_id = models.CharField(max_length=80, blank=True)
    conversation = models.JSONField(default=list)
    body = models.JSONField(default=dict)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = _("stored response")
        verbose_name_plural = _("stored responses")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.response_id
