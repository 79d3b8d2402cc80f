"""Data residency: which deployments may see a team's requests (152-FZ).

Every deployment declares ``data_region`` (ISO 3166-1 alpha-2, ``ru`` for
GigaChat and Yandex AI Studio) and ``stores_prompts`` (whether the provider
keeps request data). A team's ``data_policy`` is ``any``, ``ru_only`` (only
``ru`` deployments) or ``ru_no_retention`` (``ru`` and ``stores_prompts:
false``); a request can tighten it, never loosen it: OpenRouter's
``provider.data_collection: "deny"`` asks for no retention.

:func:`refusal` is the one check. The router (:func:`routing.router.candidates`)
calls it for every deployment before any attempt, so a non-compliant
deployment is skipped before a byte leaves, whether it is the requested
model's, a fallback's or one behind ``xrouter/auto``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RU = "ru"

ANY = "any"
RU_ONLY = "ru_only"
RU_NO_RETENTION = "ru_no_retention"
POLICIES = (ANY, RU_ONLY, RU_NO_RETENTION)

# Provider kinds whose service keeps data in Russia. A foreign
# OpenAI-compatible upstream must declare its region; undeclared is "".
_KIND_REGIONS = {"gigachat": RU, "yandexgpt": RU}


@dataclass(frozen=True, slots=True)
class Residency:
    """The policy one request runs under: the team's, maybe tightened.

    ``name`` is what refusals quote: the team policy, or e.g.
    ``any + data_collection: deny`` when the request tightened it.
    """

    name: str
    ru_only: bool = False
    no_retention: bool = False

    @property
    def restricts(self) -> bool:
        return self.ru_only or self.no_retention


UNRESTRICTED = Residency(ANY)


def residency_for(team_policy: str, *, data_collection: str | None = None) -> Residency:
    """Return the policy of a request from its team's and its own wishes.

    ``data_collection`` is the request's ``provider.data_collection``
    (``allow`` or ``deny``); ``allow`` cannot loosen the team's policy.
    """
    ru_only = team_policy in (RU_ONLY, RU_NO_RETENTION)
    no_retention = team_policy == RU_NO_RETENTION
    name = team_policy if team_policy in POLICIES else ANY
    if data_collection == "deny" and not no_retention:
        no_retention = True
        name = f"{name} + data_collection: deny"
    if not (ru_only or no_retention):
        return UNRESTRICTED
    return Residency(name, ru_only=ru_only, no_retention=no_retention)


def refusal(policy: Residency, *, data_region: str, stores_prompts: bool) -> str:
    """Return why ``policy`` forbids a deployment, or "" when it may serve.

    The reason is short and safe for headers and usage records:
    ``data_region=us``, ``data_region=undeclared``, ``stores_prompts``.
    """
    if policy.ru_only and data_region != RU:
        return f"data_region={data_region or 'undeclared'}"
    if policy.no_retention and stores_prompts:
        return "stores_prompts"
    return ""


def violation_message(policy: Residency, model_id: str) -> str:
    """The 403 ``data_policy_violation`` message: names the policy, never a downgrade."""
    wants = []
    if policy.ru_only:
        wants.append("keep data in Russia (data_region: ru)")
    if policy.no_retention:
        wants.append("keep no request data (stores_prompts: false)")
    return (
        f"The data policy '{policy.name}' allows only deployments that "
        f"{' and '.join(wants)}; no deployment of '{model_id}' or its fallbacks complies."
    )


def default_region(kind: str) -> str:
    """The region a deployment of provider ``kind`` has unless the catalog says otherwise."""
    return _KIND_REGIONS.get(kind, "")


def default_stores_prompts(kind: str, options: dict[str, Any]) -> bool:
    """Whether a provider of ``kind`` keeps request data unless the catalog says otherwise.

    Yandex AI Studio keeps nothing when XRouter sends
    ``x-data-logging-enabled: false``, which the adapter does unless the
    provider's ``data_logging`` option is true. Anything else is assumed to
    keep data until the catalog declares ``stores_prompts: false``.
    """
    if kind == "yandexgpt":
        return bool(options.get("data_logging", False))
    return True
