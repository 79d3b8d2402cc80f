"""Prometheus metrics of the gateway.

Under gunicorn every worker is its own process, so prometheus-client runs in
multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` is set (the gunicorn
config sets it); ``/metrics`` then aggregates all workers. Labels never carry
keys, prompts or free-form client strings: models are catalog ids only.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

REQUESTS = Counter(
    "xrouter_requests_total",
    "Gateway requests by endpoint, model, provider and status.",
    ["endpoint", "model", "provider", "status"],
)
LATENCY = Histogram(
    "xrouter_request_duration_seconds",
    "Time to the full response.",
    ["endpoint", "model", "provider"],
    buckets=_LATENCY_BUCKETS,
)
TTFT = Histogram(
    "xrouter_time_to_first_token_seconds",
    "Time to the first streamed chunk.",
    ["model", "provider"],
    buckets=_LATENCY_BUCKETS,
)
TOKENS = Counter(
    "xrouter_tokens_total", "Tokens by model and direction.", ["model", "provider", "direction"]
)
COST = Counter("xrouter_cost_rub_total", "Cost charged to clients, RUB.", ["model", "provider"])
FALLBACKS = Counter("xrouter_fallbacks_total", "Requests served after a failed attempt.", ["model"])
UPSTREAM_ERRORS = Counter(
    "xrouter_upstream_errors_total", "Failed upstream attempts.", ["provider", "code"]
)
LIMIT_REFUSALS = Counter(
    "xrouter_limit_refusals_total", "Requests refused by a limit.", ["code", "scope"]
)
TOKEN_COUNTS = Counter(
    "xrouter_token_counts_total",
    "Provider token counts asked where the estimate could not decide a limit, by outcome "
    "(counted, cached, failed: the estimate decided, unsupported: no counter).",
    ["provider", "outcome"],
)
LIMITER_FAIL_OPEN = Counter(
    "xrouter_limiter_fail_open_total",
    "Limit decisions taken in-process because Redis was unreachable.",
)
USAGE_BUFFER_DEPTH = Gauge(
    "xrouter_usage_buffer_depth",
    "Usage records waiting to be written.",
    multiprocess_mode="livesum",
)
USAGE_DROPPED = Counter(
    "xrouter_usage_dropped_total", "Usage records dropped because the buffer was full."
)
USAGE_WRITTEN = Counter("xrouter_usage_written_total", "Usage records written to the database.")
USAGE_DIRECT_WRITES = Counter(
    "xrouter_usage_direct_writes_total",
    "Usage records the request inserted itself because the Redis stream did not confirm them.",
)
BREAKER_OPEN = Gauge(
    "xrouter_breaker_open",
    "1 while a deployment's circuit breaker is open.",
    ["provider", "deployment"],
    multiprocess_mode="max",
)
DEPLOYMENT_HEALTHY = Gauge(
    "xrouter_deployment_healthy",
    "1 if the last health check passed.",
    ["provider", "deployment"],
    multiprocess_mode="max",
)
