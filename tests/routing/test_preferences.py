"""OpenRouter's ``provider`` routing preferences, through the gateway.

Every test reads the attempt chain the gateway reports in
``x-xrouter-attempts`` (``provider:status, ...``), so what was tried, in
which order, is observed rather than inferred.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest
import requests

from accounts.models import Team
from routing import preferences
from routing.breaker import breakers
from routing.table import get_table
from tests.conftest import LiveGateway
from tests.gateway_process import free_port

SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "city",
        "schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture
def routed(gateway: LiveGateway, load_catalog: Any, upstream: Any, settings: Any) -> Any:
    settings.XROUTER_RETRY_BACKOFF_BASE_SECONDS = 0.001
    breakers.reset()
    url = f"{upstream.base_url}/v1"
    dead = f"http://127.0.0.1:{free_port()}/v1"
    load_catalog(f"""
providers:
  - {{name: alpha, kind: openai, base_url: "{url}", api_key_env: TEST_UPSTREAM_KEY}}
  - {{name: beta, kind: openai, base_url: "{url}", api_key_env: TEST_UPSTREAM_KEY}}
  - {{name: gamma, kind: openai, base_url: "{url}", api_key_env: TEST_UPSTREAM_KEY}}
  - {{name: dead, kind: openai, base_url: "{dead}", api_key_env: TEST_UPSTREAM_KEY,
      options: {{connect_timeout: 0.5}}}}
models:
  - id: team/multi
    pricing: {{prompt: 1, completion: 1}}
    deployments:
      - {{provider: alpha, upstream: gpt-mock, priority: 0}}
      - {{provider: beta, upstream: gpt-mock, priority: 1}}
      - {{provider: gamma, upstream: gpt-mock, priority: 2}}
      - {{provider: dead, upstream: gpt-mock, priority: 3}}
  - id: team/lite
    provider: gamma
    upstream: gpt-mock
    pricing: {{prompt: 0.1, completion: 0.2}}
    supported_parameters: [temperature, max_tokens]
  - id: team/pro
    provider: beta
    upstream: gpt-mock
    pricing: {{prompt: 2, completion: 4}}
  - id: team/mid
    provider: alpha
    upstream: gpt-mock
    pricing: {{prompt: 0.5, completion: 0.5}}
  - id: team/any
    fallbacks: [team/pro, team/lite, team/mid]
""")
    yield gateway
    breakers.reset()


def ask(gateway: LiveGateway, model: str, provider: Any = None, **kwargs: Any) -> Any:
    extra = {"provider": provider} if provider is not None else None
    return gateway.client().chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": "hello"}],
        extra_body=extra,
        **kwargs,
    )


def test_without_preferences_priority_decides(routed: LiveGateway) -> None:
    raw = ask(routed, "team/multi")
    assert raw.headers["x-xrouter-attempts"] == "alpha:200"


def test_order_tries_listed_providers_first_then_the_rest(routed: LiveGateway) -> None:
    raw = ask(routed, "team/multi", {"order": ["gamma", "beta"]})
    assert raw.headers["x-xrouter-attempts"] == "gamma:200"
    # A listed provider that fails falls back to the next listed one, then the rest.
    raw = ask(routed, "team/multi", {"order": ["dead", "beta"]})
    assert raw.headers["x-xrouter-attempts"] == "dead:502, beta:200"
    assert raw.headers["x-xrouter-provider"] == "beta"


def test_order_without_fallbacks_stops_at_the_listed_providers(routed: LiveGateway) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        ask(routed, "team/multi", {"order": ["dead"], "allow_fallbacks": False})
    assert caught.value.status_code == 502
    assert caught.value.response.headers["x-xrouter-attempts"] == "dead:502"


def test_no_fallbacks_without_order_tries_only_the_first_choice(routed: LiveGateway) -> None:
    raw = ask(routed, "team/multi", {"ignore": ["alpha"], "allow_fallbacks": False})
    assert raw.headers["x-xrouter-attempts"] == "beta:200"


def test_only_restricts_to_the_listed_providers(routed: LiveGateway) -> None:
    raw = ask(routed, "team/multi", {"only": ["gamma"]})
    assert raw.headers["x-xrouter-attempts"] == "gamma:200"
    # Also across the models of an alias.
    raw = ask(routed, "team/any", {"only": ["alpha"]})
    assert raw.headers["x-xrouter-attempts"] == "alpha:200"
    assert raw.headers["x-xrouter-model"] == "team/mid"


def test_ignore_skips_providers(routed: LiveGateway) -> None:
    raw = ask(routed, "team/multi", {"ignore": ["alpha", "beta"]})
    assert raw.headers["x-xrouter-attempts"] == "gamma:200"


def test_sort_by_price_tries_the_cheapest_model_first(routed: LiveGateway) -> None:
    assert ask(routed, "team/any").headers["x-xrouter-model"] == "team/pro"
    raw = ask(routed, "team/any", {"sort": "price"})
    assert raw.headers["x-xrouter-model"] == "team/lite"
    assert raw.headers["x-xrouter-attempts"] == "gamma:200"
    # The order of every candidate: the cheapest, then up.
    table = get_table()
    options = preferences.apply(
        _candidates(table, "team/any"),
        preferences.parse({"sort": "price"}),
        table,
        _request(),
    )
    assert [c.route.model_id for c in options] == ["team/lite", "team/mid", "team/pro"]


def test_max_price_drops_models_above_the_cap(routed: LiveGateway) -> None:
    raw = ask(routed, "team/any", {"max_price": {"prompt": 0.5, "completion": 1}})
    # team/pro (2 / 4) is over the cap; team/lite is next in the alias.
    assert raw.headers["x-xrouter-attempts"] == "gamma:200"
    raw = ask(routed, "team/any", {"max_price": {"completion": 0.3}})
    assert raw.headers["x-xrouter-model"] == "team/lite"
    with pytest.raises(openai.BadRequestError) as caught:
        ask(routed, "team/any", {"max_price": {"prompt": 0.01}})
    error = caught.value.body
    assert error["param"] == "provider.max_price"
    assert error["code"] == "no_matching_deployment"


def test_require_parameters_skips_deployments_that_ignore_a_parameter(
    routed: LiveGateway,
) -> None:
    # team/lite declares no structured_outputs: without the preference it
    # would serve a json_schema request and ignore the schema.
    plain = ask(routed, "team/any", {"order": ["gamma"]}, response_format=SCHEMA)
    assert plain.headers["x-xrouter-model"] == "team/lite"
    raw = ask(
        routed,
        "team/any",
        {"order": ["gamma"], "require_parameters": True},
        response_format=SCHEMA,
    )
    assert raw.headers["x-xrouter-attempts"] == "beta:200"
    assert raw.headers["x-xrouter-model"] == "team/pro"
    # Parameters lite does honour keep it eligible.
    raw = ask(
        routed,
        "team/any",
        {"order": ["gamma"], "require_parameters": True},
        temperature=0.3,
        max_tokens=20,
    )
    assert raw.headers["x-xrouter-attempts"] == "gamma:200"
    with pytest.raises(openai.BadRequestError) as caught:
        ask(
            routed,
            "team/lite",
            {"require_parameters": True},
            response_format=SCHEMA,
        )
    assert caught.value.body["param"] == "provider.require_parameters"
    assert "structured_outputs" in caught.value.body["message"]


def test_xrouter_auto_with_require_parameters_never_picks_a_model_ignoring_json_schema(
    routed: LiveGateway,
) -> None:
    for _ in range(3):
        raw = ask(
            routed,
            "xrouter/auto",
            {"require_parameters": True, "sort": "price"},
            response_format=SCHEMA,
        )
        # The cheapest model that honours json_schema, never team/lite.
        assert raw.headers["x-xrouter-model"] == "team/mid"
        assert raw.headers["x-xrouter-attempts"] == "alpha:200"


@pytest.mark.parametrize(
    ("provider", "param"),
    [
        ({"sort": "fastest"}, "provider.sort"),
        ({"order": "alpha"}, "provider.order"),
        ({"only": ["nobody"]}, "provider.only"),
        ({"order": ["alpha", "nobody"]}, "provider.order[1]"),
        ({"allow_fallbacks": "no"}, "provider.allow_fallbacks"),
        ({"require_parameters": 1}, "provider.require_parameters"),
        ({"max_price": {"request": 1}}, "provider.max_price.request"),
        ({"max_price": {"prompt": -1}}, "provider.max_price.prompt"),
        ({"data_collection": "never"}, "provider.data_collection"),
        ({"data_collection": 1}, "provider.data_collection"),
        ({"collect": "deny"}, "provider.collect"),
        ("alpha", "provider"),
    ],
)
def test_bad_preferences_are_a_400_naming_the_field(
    routed: LiveGateway, provider: Any, param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        ask(routed, "team/multi", provider)
    assert caught.value.body["param"] == param
    assert param in caught.value.body["message"]


def test_provider_kinds_declare_what_they_honour(routed: LiveGateway, load_catalog: Any) -> None:
    table = get_table()
    lite = table.models["team/lite"].deployments[0]
    pro = table.models["team/pro"].deployments[0]
    assert lite.supported_parameters == {"temperature", "max_tokens"}
    assert {"structured_outputs", "seed", "tools"} <= pro.supported_parameters
    from providers.registry import provider_class

    giga = provider_class("gigachat").supported_parameters
    yandex = provider_class("yandexgpt").supported_parameters
    assert "structured_outputs" in giga and "seed" not in giga and "response_format" not in giga
    assert "stop" not in yandex and "top_p" not in yandex and "tools" in yandex


def test_used_parameters() -> None:
    request = _request(temperature=0.2, stop=["x"], response_format={"type": "json_object"}, seed=1)
    assert preferences.used_parameters(request) == {
        "temperature",
        "stop",
        "response_format",
        "seed",
    }


def test_sort_by_latency_and_throughput_use_what_the_worker_observed(routed: LiveGateway) -> None:
    table = get_table()
    options = _candidates(table, "team/any")
    by_model = {c.route.model_id: c.deployment.deployment_id for c in options}
    preferences.observe(by_model["team/pro"], latency_ms=900, completion_tokens=50, seconds=1)
    preferences.observe(by_model["team/lite"], latency_ms=100, completion_tokens=10, seconds=1)
    preferences.observe(by_model["team/mid"], latency_ms=300, completion_tokens=200, seconds=1)
    try:
        latency = preferences.apply(
            options, preferences.parse({"sort": "latency"}), table, _request()
        )
        assert [c.route.model_id for c in latency] == ["team/lite", "team/mid", "team/pro"]
        fast = preferences.apply(
            options, preferences.parse({"sort": "throughput"}), table, _request()
        )
        assert [c.route.model_id for c in fast] == ["team/mid", "team/pro", "team/lite"]
    finally:
        preferences.reset_observations()


def _request(**kwargs: Any) -> Any:
    from providers.base import ChatRequest, Message

    return ChatRequest(model="x", messages=[Message(role="user", content="hi")], **kwargs)


def _candidates(table: Any, model_id: str) -> Any:
    from routing import router

    routes = [table.models[model_id]] + [table.models[m] for m in table.models[model_id].fallbacks]
    return router.candidates(table, routes)


SURFACE_BODIES = {
    "/v1/responses": {"input": "hello"},
    "/v1/completions": {"prompt": "hello"},
    "/v1/messages": {"max_tokens": 20, "messages": [{"role": "user", "content": "hello"}]},
    "/v1/messages/count_tokens": {"messages": [{"role": "user", "content": "hello"}]},
}


@pytest.mark.parametrize("path", sorted(SURFACE_BODIES))
def test_every_surface_takes_the_provider_object(routed: LiveGateway, path: str) -> None:
    body = {
        "model": "team/multi",
        "provider": {"order": ["dead", "gamma"], "ignore": ["alpha"]},
        **SURFACE_BODIES[path],
    }
    response = requests.post(routed.url + path, headers=routed.headers, json=body, timeout=15)
    assert response.status_code == 200, response.content
    if path.endswith("count_tokens"):
        # An OpenAI-compatible upstream has no token counter: the first
        # deployment the preferences put first answers with the estimate,
        # without a connection (so even the dead one).
        assert response.headers["x-xrouter-attempts"] == "dead:200"
    else:
        assert response.headers["x-xrouter-attempts"] == "dead:502, gamma:200"
    bad = requests.post(
        routed.url + path,
        headers=routed.headers,
        json={**body, "provider": {"sort": "fastest"}},
        timeout=15,
    )
    assert bad.status_code == 400
    assert "provider.sort" in bad.text


def test_embeddings_take_the_provider_object(
    routed: LiveGateway, load_catalog: Any, upstream: Any
) -> None:
    url = f"{upstream.base_url}/v1"
    load_catalog(f"""
providers:
  - {{name: alpha, kind: openai, base_url: "{url}", api_key_env: TEST_UPSTREAM_KEY}}
  - {{name: beta, kind: openai, base_url: "{url}", api_key_env: TEST_UPSTREAM_KEY}}
models:
  - id: team/embed
    type: embedding
    deployments:
      - {{provider: alpha, upstream: text-embedding-mock, priority: 0}}
      - {{provider: beta, upstream: text-embedding-mock, priority: 1}}
""")
    raw = routed.client().embeddings.with_raw_response.create(
        model="team/embed", input="hello", extra_body={"provider": {"only": ["beta"]}}
    )
    assert raw.headers["x-xrouter-attempts"] == "beta:200"
    with pytest.raises(openai.BadRequestError) as caught:
        routed.client().embeddings.create(
            model="team/embed", input="hello", extra_body={"provider": {"only": "beta"}}
        )
    assert caught.value.body["param"] == "provider.only"


def test_preferences_never_route_around_the_data_policy(
    routed: LiveGateway, load_catalog: Any, upstream: Any, upstream_control: Any
) -> None:
    url = f"{upstream.base_url}/v1"
    load_catalog(f"""
providers:
  - {{name: abroad, kind: openai, base_url: "{url}", api_key_env: TEST_UPSTREAM_KEY,
      data_region: us}}
  - {{name: home, kind: openai, base_url: "{url}", api_key_env: TEST_UPSTREAM_KEY,
      data_region: ru}}
models:
  - id: team/both
    deployments:
      - {{provider: home, upstream: gpt-mock, priority: 0}}
      - {{provider: abroad, upstream: gpt-mock, priority: 1}}
""")
    team = Team.objects.get(slug="acme")
    team.data_policy = "ru_only"
    team.save()
    # Ordered first, the refused deployment is recorded as skipped, not tried.
    raw = ask(routed, "team/both", {"order": ["abroad"]})
    assert raw.headers["x-xrouter-attempts"] == "abroad:skipped(data_region=us), home:200"
    # No fallbacks: the first choice is the first one the policy allows.
    raw = ask(routed, "team/both", {"order": ["abroad", "home"], "allow_fallbacks": False})
    assert raw.headers["x-xrouter-provider"] == "home"
    # Only refused ones left: the data policy's 403, nothing sent.
    before = upstream_control.stats()["requests_total"]
    with pytest.raises(openai.PermissionDeniedError) as caught:
        ask(routed, "team/both", {"only": ["abroad"]})
    assert caught.value.body["code"] == "data_policy_violation"
    assert caught.value.response.headers["x-xrouter-attempts"] == ("abroad:skipped(data_region=us)")
    assert upstream_control.stats()["requests_total"] == before
