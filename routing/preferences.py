"""Request-level routing preferences: OpenRouter's ``provider`` object.

Every surface (chat, completions, messages, responses) accepts the same
object and hands the parsed :class:`Preferences` to the router, which
applies them to the ordered candidate list (:func:`apply`)::

    "provider": {
        "order": ["yandex", "gigachat"],   # try these providers first, in order
        "only": ["yandex"],                # never any other provider
        "ignore": ["demo-openai"],         # never these
        "allow_fallbacks": false,          # only the ordered ones (or the first choice)
        "sort": "price",                   # price | latency | throughput
        "max_price": {"prompt": 1, "completion": 2},   # RUB per 1K tokens
        "require_parameters": true,        # only deployments that honour every parameter
        "data_collection": "deny",         # only deployments that keep no request data
    }

Provider names are the catalog's provider slugs (``x-xrouter-provider``).
``data_collection`` tightens the team's data policy for this request, never
loosens it (:mod:`routing.residency`, applied by the router before these
preferences: a refused deployment stays refused whatever the order).
Unknown fields and values are refused with a 400 naming the field; a
combination that leaves no deployment is a 400 naming the preference that
removed the last one.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from providers.base import ChatRequest
from routing import health
from xrouter_site.errors import ErrorCode, InvalidRequest
from xrouter_site.state import on_reset

if TYPE_CHECKING:
    from routing.router import Candidate
    from routing.table import RoutingTable

SORTS = ("price", "latency", "throughput")
FIELDS = (
    "order",
    "only",
    "ignore",
    "allow_fallbacks",
    "sort",
    "max_price",
    "require_parameters",
    "data_collection",
)
DATA_COLLECTION = ("allow", "deny")
PRICE_FIELDS = ("prompt", "completion")
MAX_NAMES = 64


@dataclass(frozen=True, slots=True)
class Preferences:
    order: tuple[str, ...] = ()
    only: frozenset[str] | None = None
    ignore: frozenset[str] = frozenset()
    allow_fallbacks: bool = True
    sort: str | None = None
    max_prompt_price: Decimal | None = None
    max_completion_price: Decimal | None = None
    require_parameters: bool = False
    # "allow" | "deny" | None; read by routing.residency.residency_for.
    data_collection: str | None = None

    @property
    def is_default(self) -> bool:
        return self == DEFAULT

    @property
    def reorders(self) -> bool:
        """Whether :func:`apply` has anything to do (data_collection is the router's)."""
        return dataclasses.replace(self, data_collection=None) != DEFAULT

    def named_providers(self) -> list[tuple[str, str]]:
        """Return (param, provider name) for every provider the object names."""
        named = [(f"provider.order[{i}]", name) for i, name in enumerate(self.order)]
        named += [("provider.only", name) for name in sorted(self.only or ())]
        named += [("provider.ignore", name) for name in sorted(self.ignore)]
        return named


DEFAULT = Preferences()


def _error(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid value for '{param}': {message}", param=param, code=ErrorCode.INVALID_VALUE
    )


def _names(value: Any, param: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _error(param, "expected an array of provider names.")
    if len(value) > MAX_NAMES:
        raise _error(param, f"at most {MAX_NAMES} provider names are allowed.")
    return [v.strip() for v in value]


def _price(value: Any, param: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _error(param, "expected a number (RUB per 1K tokens).")
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        raise _error(param, "expected a number (RUB per 1K tokens).") from None
    if not price.is_finite() or price < 0:
        raise _error(param, "must be a non-negative number.")
    return price


def parse(value: Any) -> Preferences:
    """Validate a request's ``provider`` object; raise ``InvalidRequest``."""
    if value is None:
        return DEFAULT
    if not isinstance(value, dict):
        raise InvalidRequest(
            "Invalid type for 'provider': expected an object.",
            param="provider",
            code=ErrorCode.INVALID_TYPE,
        )
    for name in value:
        if name not in FIELDS:
            raise _error(
                f"provider.{name}", f"unknown routing preference; known: {', '.join(FIELDS)}."
            )
    order = tuple(_names(value["order"], "provider.order")) if "order" in value else ()
    only = frozenset(_names(value["only"], "provider.only")) if "only" in value else None
    ignore = frozenset(_names(value["ignore"], "provider.ignore")) if "ignore" in value else None
    flags: dict[str, bool] = {}
    for name, default in (("allow_fallbacks", True), ("require_parameters", False)):
        flag = value.get(name, default)
        if not isinstance(flag, bool):
            raise InvalidRequest(
                f"Invalid type for 'provider.{name}': expected a boolean.",
                param=f"provider.{name}",
                code=ErrorCode.INVALID_TYPE,
            )
        flags[name] = flag
    sort = value.get("sort")
    if sort is not None and sort not in SORTS:
        raise _error("provider.sort", f"must be one of {', '.join(SORTS)}; got {sort!r}.")
    prompt = completion = None
    if "max_price" in value:
        caps = value["max_price"]
        if not isinstance(caps, dict):
            raise _error("provider.max_price", "expected an object with prompt and/or completion.")
        for name in caps:
            if name not in PRICE_FIELDS:
                raise _error(
                    f"provider.max_price.{name}",
                    f"unknown price; known: {', '.join(PRICE_FIELDS)} (RUB per 1K tokens).",
                )
        if "prompt" in caps:
            prompt = _price(caps["prompt"], "provider.max_price.prompt")
        if "completion" in caps:
            completion = _price(caps["completion"], "provider.max_price.completion")
    collection = value.get("data_collection")
    if collection is not None:
        if not isinstance(collection, str):
            raise InvalidRequest(
                "Invalid type for 'provider.data_collection': expected a string.",
                param="provider.data_collection",
                code=ErrorCode.INVALID_TYPE,
            )
        if collection not in DATA_COLLECTION:
            raise _error(
                "provider.data_collection", f"must be 'allow' or 'deny', got {collection!r}."
            )
    return Preferences(
        order=order,
        only=only,
        ignore=ignore or frozenset(),
        allow_fallbacks=flags["allow_fallbacks"],
        sort=sort,
        max_prompt_price=prompt,
        max_completion_price=completion,
        require_parameters=flags["require_parameters"],
        data_collection=collection,
    )


def used_parameters(request: ChatRequest | None) -> frozenset[str]:
    """Return the parameters (providers.base.PARAMETERS) a request sets.

    ``None`` (an embedding request) sets none of them.
    """
    if request is None:
        return frozenset()
    used = {
        name
        for name, value in (
            ("temperature", request.temperature),
            ("top_p", request.top_p),
            ("max_tokens", request.max_tokens),
            ("stop", request.stop),
            ("presence_penalty", request.presence_penalty),
            ("frequency_penalty", request.frequency_penalty),
            ("seed", request.seed),
            ("tool_choice", request.tool_choice),
            ("parallel_tool_calls", request.parallel_tool_calls),
            ("reasoning", request.extra.get("reasoning_effort")),
        )
        if value is not None
    }
    if request.tools:
        used.add("tools")
    kind = (request.response_format or {}).get("type")
    if kind == "json_object":
        used.add("response_format")
    elif kind == "json_schema":
        used.add("structured_outputs")
    return frozenset(used)


# --- what this worker observed of each deployment (sort: latency/throughput)


@dataclass(slots=True)
class _Observed:
    latency_ms: float
    tokens_per_second: float | None


_ALPHA = 0.2
_observed: dict[int, _Observed] = {}
_observed_lock = threading.Lock()


def observe(
    deployment_id: int, *, latency_ms: float, completion_tokens: int, seconds: float
) -> None:
    """Fold one served call into the deployment's moving averages."""
    rate = completion_tokens / seconds if completion_tokens and seconds > 0 else None
    with _observed_lock:
        current = _observed.get(deployment_id)
        if current is None:
            _observed[deployment_id] = _Observed(latency_ms, rate)
            return
        current.latency_ms += _ALPHA * (latency_ms - current.latency_ms)
        if rate is not None:
            current.tokens_per_second = (
                rate
                if current.tokens_per_second is None
                else current.tokens_per_second + _ALPHA * (rate - current.tokens_per_second)
            )


def reset_observations() -> None:
    with _observed_lock:
        _observed.clear()


on_reset("routing.preferences", reset_observations)


def _latency(deployment_id: int) -> float:
    seen = _observed.get(deployment_id)
    if seen is not None:
        return seen.latency_ms
    state = health.health_of(deployment_id)
    if state is not None and state.latency_ms:
        return float(state.latency_ms)
    return math.inf


def _throughput(deployment_id: int) -> float:
    seen = _observed.get(deployment_id)
    if seen is None or seen.tokens_per_second is None:
        return math.inf  # unknown goes last (the key is negated below)
    return -seen.tokens_per_second


def _price_key(candidate: Candidate) -> Decimal:
    route = candidate.route
    if route.prompt_price is None and route.completion_price is None:
        return Decimal("Infinity")  # unpriced models go last
    return (route.prompt_price or Decimal(0)) + (route.completion_price or Decimal(0))


def _unhealthy(candidate: Candidate) -> bool:
    state = health.health_of(candidate.deployment.deployment_id)
    return state is not None and not state.healthy


def _within_price(candidate: Candidate, prefs: Preferences) -> bool:
    route = candidate.route
    for cap, price in (
        (prefs.max_prompt_price, route.prompt_price),
        (prefs.max_completion_price, route.completion_price),
    ):
        # An unpriced model cannot be shown to be under the cap.
        if cap is not None and (price is None or price > cap):
            return False
    return True


def apply(
    options: list[Candidate],
    prefs: Preferences,
    table: RoutingTable,
    request: ChatRequest | None,
) -> list[Candidate]:
    """Filter and reorder the router's candidates by the request's preferences.

    Candidates the data policy refused (``refused`` set) are kept like any
    other: the caller refuses the request when only those are left, and the
    router records them as skipped in the attempt chain.
    """
    if not prefs.reorders:
        return options
    for param, name in prefs.named_providers():
        if name not in table.providers:
            raise _error(param, f"no provider named {name!r} is configured.")
    kept = options

    def narrow(param: str, keep: Any, why: str) -> list[Candidate]:
        left = [c for c in kept if keep(c)]
        if not left:
            raise InvalidRequest(
                f"No deployment of '{options[0].route.model_id}' is left after '{param}': {why}",
                param=param,
                code=ErrorCode.NO_MATCHING_DEPLOYMENT,
            )
        return left

    if prefs.only is not None:
        only = prefs.only
        kept = narrow(
            "provider.only",
            lambda c: c.deployment.provider in only,
            "no listed provider serves it.",
        )
    if prefs.ignore:
        kept = narrow(
            "provider.ignore",
            lambda c: c.deployment.provider not in prefs.ignore,
            "every provider that serves it is ignored.",
        )
    if prefs.max_prompt_price is not None or prefs.max_completion_price is not None:
        kept = narrow(
            "provider.max_price",
            lambda c: _within_price(c, prefs),
            "every model is priced above the cap (or unpriced).",
        )
    if prefs.require_parameters:
        used = used_parameters(request)
        missing = sorted(used - set().union(*(c.deployment.supported_parameters for c in kept)))
        kept = narrow(
            "provider.require_parameters",
            lambda c: used <= c.deployment.supported_parameters,
            "no deployment honours every parameter of the request"
            + (f" (none honours {', '.join(missing)})." if missing else "."),
        )
    if prefs.sort == "price":
        kept = sorted(kept, key=lambda c: (_unhealthy(c), _price_key(c)))
    elif prefs.sort == "latency":
        kept = sorted(kept, key=lambda c: (_unhealthy(c), _latency(c.deployment.deployment_id)))
    elif prefs.sort == "throughput":
        kept = sorted(kept, key=lambda c: (_unhealthy(c), _throughput(c.deployment.deployment_id)))
    if prefs.order:
        rank = {name: i for i, name in enumerate(prefs.order)}
        kept = sorted(kept, key=lambda c: rank.get(c.deployment.provider, len(rank)))
    if not prefs.allow_fallbacks:
        if prefs.order:
            kept = narrow(
                "provider.order",
                lambda c: c.deployment.provider in rank,
                "no listed provider serves it and fallbacks are off.",
            )
        else:
            # The first choice the data policy allows (a refused one is
            # never tried, so it cannot be "the" choice).
            kept = [next((c for c in kept if not c.refused), kept[0])]
    return kept
