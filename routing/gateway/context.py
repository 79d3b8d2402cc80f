"""Per-request bookkeeping of the gateway: :class:`CallContext`.

A view fills the context as the call goes (principal, model, attempts,
usage); :meth:`CallContext.finish` runs once at the end, whether the answer
was whole, streamed or an error: it settles the limiter with the real usage,
records usage (written off the hot path by :mod:`routing.usage.records`),
updates the metrics and writes the access log line.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.http import HttpResponse

from keys.principal import KeyPrincipal
from providers.base import Usage
from routing import metrics, preferences, router
from routing.limits.limiter import limiter
from routing.limits.types import Decision
from routing.table import ModelRoute
from routing.usage import records
from routing.usage.pricing import cost_rub, to_micro
from xrouter_site.errors import XRouterError, error_response
from xrouter_site.logging import write_access

access_log = logging.getLogger("xrouter.access")
logger = logging.getLogger(__name__)

# Tokens a provider may add around the prompt (roles, separators, a system
# prompt of its own) beyond the body's bytes.
PROMPT_TOKEN_SLACK = 1024


@dataclass(slots=True)
class CallContext:
    """What one request did: for limits, usage, metrics and the access log."""

    # The X-Request-ID echoed to the client: a correlation field, never a key.
    request_id: str
    method: str
    path: str
    # The gateway's own id: response ``id``, X-Generation-Id, the record's key.
    generation_id: str = field(default_factory=records.new_generation_id)
    # The provider's response id: stored for support, never shown as ours.
    upstream_id: str = ""
    # The completion tokens the upstream was allowed (bounds its usage report).
    max_tokens: int | None = None
    # Set when a budget could not cover the reservation: max_tokens sent.
    capped_max_tokens: int | None = None
    usage_anomaly: str = ""
    # Size of the request body: an upper bound of its prompt tokens.
    body_bytes: int = 0
    started: float = field(default_factory=time.perf_counter)
    created: float = field(default_factory=time.time)
    endpoint: str = ""
    principal: KeyPrincipal | None = None
    requested_model: str | None = None
    model: str | None = None
    route: ModelRoute | None = None
    provider: str | None = None
    deployment_id: int | None = None
    model_version: str | None = None
    attempts: list[router.Attempt] = field(default_factory=list)
    upstream_ms: float | None = None
    first_token_ms: float | None = None
    usage: Usage | None = None
    cost: Decimal = Decimal(0)
    decision: Decision | None = None
    prompt_estimate: int = 0
    status: int = 200
    error_code: str | None = None
    stream: bool = False
    stream_complete: bool | None = None
    finish_reason: str = ""
    # Provider fields of the request the serving adapter does not know.
    ignored_params: list[str] = field(default_factory=list)
    # What the PII guardrail found, as counts by kind (never the values).
    pii_counts: dict[str, int] = field(default_factory=dict)
    finished: bool = False
    # Called once when the call is over (the middleware's in-flight count).
    on_finish: Any = None
    # Renders errors in the surface's dialect (OpenAI's unless a surface
    # such as /v1/messages sets its own).
    render_error: Callable[[XRouterError], HttpResponse] = error_response

    def fail(self, error: XRouterError) -> HttpResponse:
        self.status = error.http_status
        self.error_code = str(error.code)
        return self.render_error(error)

    def finish(self) -> None:
        """Settle limits, record usage and metrics, write the log line; once."""
        if self.finished:
            return
        self.finished = True
        if self.on_finish is not None:
            self.on_finish()
        served = self.plausible(self.usage) if self.usage is not None else Usage()
        if self.route is not None and self.usage is not None:
            self.cost = cost_rub(self.route.prompt_price, self.route.completion_price, served)
        if self.decision is not None:
            limiter.settle(self.decision, tokens=served.total_tokens, cost=to_micro(self.cost))
        if (
            self.principal is not None
            and self.requested_model is not None
            and settings.XROUTER_USAGE_RECORDS_ENABLED
        ):
            self._record_usage(served)
        if self.status == 200 and self.deployment_id is not None and self.usage is not None:
            elapsed = time.perf_counter() - self.started
            preferences.observe(
                self.deployment_id,
                latency_ms=self.first_token_ms or self.upstream_ms or elapsed * 1000,
                completion_tokens=served.completion_tokens,
                seconds=elapsed,
            )
        self._metrics(served)
        self._log()

    def plausible(self, reported: Usage) -> Usage:
        """Clamp what upstream reported to what the request could have used.

        The clamped usage is what the client is shown and billed; the
        record says what was changed (``usage_anomaly``).
        """
        cap = settings.XROUTER_USAGE_MAX_TOKENS
        context = self.route.context_length if self.route is not None else None
        prompt_cap = min(context or cap, cap)
        if self.body_bytes:
            # No tokenizer makes more tokens than the prompt has bytes (byte
            # fallback is one token per byte); the slack covers the special
            # tokens a provider adds around messages.
            prompt_cap = min(prompt_cap, self.body_bytes + PROMPT_TOKEN_SLACK)
        completion_cap = prompt_cap if self.max_tokens is None else min(self.max_tokens, prompt_cap)
        served, note = records.plausible_usage(
            reported, prompt_cap=prompt_cap, completion_cap=completion_cap
        )
        if note:
            self.usage_anomaly = note
            self.usage = served
            logger.warning(
                "implausible upstream usage clamped",
                extra={
                    "generation_id": self.generation_id,
                    "provider": self.provider,
                    "anomaly": note,
                },
            )
        return served

    def _record_usage(self, served: Usage) -> None:
        assert self.principal is not None and self.requested_model is not None
        records.record(
            records.UsageEvent(
                request_id=self.request_id,
                generation_id=self.generation_id,
                upstream_id=self.upstream_id[:200],
                usage_anomaly=self.usage_anomaly,
                created=self.created,
                team_id=self.principal.team_id,
                key_id=self.principal.key_id,
                endpoint=self.endpoint,
                requested_model=self.requested_model,
                served_model=self.model or "",
                model_version=self.model_version or "",
                provider=self.provider or "",
                deployment_id=self.deployment_id,
                attempts=[a.as_dict() for a in self.attempts],
                prompt_tokens=served.prompt_tokens,
                completion_tokens=served.completion_tokens,
                cached_tokens=served.cached_tokens,
                cost_rub=str(self.cost),
                status=self.status,
                error_code=self.error_code or "",
                latency_ms=(time.perf_counter() - self.started) * 1000,
                ttft_ms=self.first_token_ms,
                stream=self.stream,
                stream_complete=self.stream_complete,
                finish_reason=self.finish_reason,
                pii_counts=self.pii_counts,
            )
        )

    def _metrics(self, served: Usage) -> None:
        if not self.endpoint or not settings.XROUTER_METRICS_ENABLED:
            return
        try:
            series = series_for(self.endpoint, self.model or "-", self.provider or "-", self.status)
            series.requests.inc()
            series.latency.observe(time.perf_counter() - self.started)
            if self.first_token_ms is not None:
                series.ttft.observe(self.first_token_ms / 1000)
            if served.total_tokens:
                series.prompt_tokens.inc(served.prompt_tokens)
                series.completion_tokens.inc(served.completion_tokens)
            if self.cost:
                series.cost.inc(float(self.cost))
            tried = [a for a in self.attempts if not a.skipped]
            if len(tried) > 1 and tried[-1].status == 200:
                series.fallbacks.inc()
        except Exception:
            logger.debug("metrics failed", exc_info=True)

    def _log(self) -> None:
        if not access_log.isEnabledFor(logging.INFO):
            return  # XROUTER_ACCESS_LOG=false: not even the fields
        principal = self.principal
        entry: dict[str, Any] = {
            "request_id": self.request_id,
            "generation_id": self.generation_id,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "latency_ms": round((time.perf_counter() - self.started) * 1000, 2),
            "key_prefix": principal.prefix if principal else None,
            "team": principal.team_slug if principal else None,
            "model": self.model,
            "provider": self.provider,
            "upstream_ms": self.upstream_ms,
        }
        if self.usage is not None:
            entry["prompt_tokens"] = self.usage.prompt_tokens
            entry["completion_tokens"] = self.usage.completion_tokens
            entry["cost_rub"] = str(self.cost)
        if len(self.attempts) > 1:
            entry["attempts"] = len(self.attempts)
        if self.error_code:
            entry["error_code"] = self.error_code
        if self.pii_counts:
            entry["pii"] = self.pii_counts
        if self.stream:
            entry["stream"] = True
            entry["stream_complete"] = self.stream_complete
            entry["ttft_ms"] = self.first_token_ms
        write_access(access_log, "request", entry)


@dataclass(frozen=True, slots=True)
class Series:
    """The labelled metric children of one (endpoint, model, provider, status)."""

    requests: Any
    latency: Any
    ttft: Any
    prompt_tokens: Any
    completion_tokens: Any
    cost: Any
    fallbacks: Any


@functools.lru_cache(maxsize=4096)
def series_for(endpoint: str, model: str, provider: str, status: int) -> Series:
    """Resolve label children once per label set, not on every request.

    Labels are catalog ids, provider names and statuses only, so the set is
    small and bounded.
    """
    return Series(
        requests=metrics.REQUESTS.labels(endpoint, model, provider, str(status)),
        latency=metrics.LATENCY.labels(endpoint, model, provider),
        ttft=metrics.TTFT.labels(model, provider),
        prompt_tokens=metrics.TOKENS.labels(model, provider, "prompt"),
        completion_tokens=metrics.TOKENS.labels(model, provider, "completion"),
        cost=metrics.COST.labels(model, provider),
        fallbacks=metrics.FALLBACKS.labels(model),
    )
