"""Data residency: catalog fields, team policies and routing that skips
non-compliant deployments before any byte leaves (routing/residency.py)."""

from __future__ import annotations

from typing import Any

import openai
import pytest
import requests

from accounts.models import Team
from routing.models import Deployment, UsageRecord
from routing.residency import residency_for
from routing.services import CatalogError, catalog_load, parse_catalog
from routing.usage import records as usage
from tests.conftest import LiveGateway

CATALOG = """
providers:
  - {{name: abroad, kind: openai, base_url: "{url}/v1", api_key_env: TEST_UPSTREAM_KEY,
      data_region: us}}
  - {{name: ru-keeps, kind: openai, base_url: "{url}/v1", api_key_env: TEST_UPSTREAM_KEY,
      data_region: ru}}
  - {{name: ru-zero, kind: openai, base_url: "{url}/v1", api_key_env: TEST_UPSTREAM_KEY,
      data_region: ru, stores_prompts: false}}
  - {{name: nowhere, kind: openai, base_url: "{url}/v1", api_key_env: TEST_UPSTREAM_KEY}}
models:
  - id: foreign/gpt
    provider: abroad
    upstream: gpt-mock
  - id: foreign/with-ru-fallback
    provider: abroad
    upstream: gpt-mock
    fallbacks: [ru/keeps]
  - id: ru/keeps
    provider: ru-keeps
    upstream: gpt-mock
  - id: ru/zero
    provider: ru-zero
    upstream: gpt-mock
  - id: ru/mixed
    deployments:
      - {{provider: ru-keeps, upstream: gpt-mock, priority: 0}}
      - {{provider: ru-zero, upstream: gpt-mock, priority: 1}}
  - id: unknown/region
    provider: nowhere
    upstream: gpt-mock
"""


@pytest.fixture
def resident(gateway: LiveGateway, load_catalog: Any, upstream: Any) -> LiveGateway:
    load_catalog(CATALOG.format(url=upstream.base_url))
    return gateway


def _policy(name: str) -> None:
    team = Team.objects.get(slug="acme")
    team.data_policy = name
    team.save()


def ask(gateway: LiveGateway, model: str, **extra: Any) -> requests.Response:
    return requests.post(
        gateway.url + "/v1/chat/completions",
        headers=gateway.headers,
        json={"model": model, "messages": [{"role": "user", "content": "привет"}], **extra},
        timeout=10,
    )


def _usage_rows() -> list[UsageRecord]:
    sink = usage.stream_sink()
    if sink is not None:
        while sink.consume_once(block_ms=10):
            pass
    usage.flush_all()
    return list(UsageRecord.objects.order_by("created_at"))


# --- the policy function -------------------------------------------------------


def test_a_request_can_tighten_the_team_policy_but_never_loosen_it() -> None:
    assert not residency_for("any").restricts
    assert not residency_for("any", data_collection="allow").restricts
    denied = residency_for("any", data_collection="deny")
    assert (denied.ru_only, denied.no_retention) == (False, True)
    assert denied.name == "any + data_collection: deny"
    ru = residency_for("ru_only", data_collection="allow")
    assert (ru.ru_only, ru.no_retention, ru.name) == (True, False, "ru_only")
    tightened = residency_for("ru_only", data_collection="deny")
    assert (tightened.ru_only, tightened.no_retention) == (True, True)
    strict = residency_for("ru_no_retention", data_collection="allow")
    assert (strict.ru_only, strict.no_retention, strict.name) == (True, True, "ru_no_retention")


# --- catalog fields ------------------------------------------------------------


@pytest.mark.django_db
def test_catalog_declares_region_and_retention_with_kind_defaults() -> None:
    catalog_load(
        parse_catalog("""
providers:
  - {name: sber, kind: gigachat, base_url: "https://gigachat.example/api/v1"}
  - {name: yandex, kind: yandexgpt, base_url: "https://llm.example/foundationModels/v1"}
  - {name: yandex-logged, kind: yandexgpt, base_url: "https://llm.example/foundationModels/v1",
     options: {data_logging: true}}
  - {name: vllm, kind: openai, base_url: "http://vllm:8000/v1"}
  - {name: eu, kind: openai, base_url: "http://eu:8000/v1", data_region: DE,
     stores_prompts: false}
models:
  - {id: a/giga, provider: sber, upstream: GigaChat}
  - {id: a/yandex, provider: yandex, upstream: yandexgpt}
  - {id: a/yandex-logged, provider: yandex-logged, upstream: yandexgpt}
  - {id: a/vllm, provider: vllm, upstream: llama}
  - {id: a/vllm-ru, provider: vllm, upstream: llama, data_region: ru, stores_prompts: false}
  - id: a/eu
    deployments:
      - {provider: eu, upstream: m}
      - {provider: eu, upstream: m2, stores_prompts: true}
""")
    )
    got = {
        (d.model.model_id, d.upstream): (d.data_region, d.stores_prompts)
        for d in Deployment.objects.select_related("model")
    }
    assert got == {
        ("a/giga", "GigaChat"): ("ru", True),
        ("a/yandex", "yandexgpt"): ("ru", False),
        ("a/yandex-logged", "yandexgpt"): ("ru", True),
        ("a/vllm", "llama"): ("", True),
        ("a/vllm-ru", "llama"): ("ru", False),
        ("a/eu", "m"): ("de", False),
        ("a/eu", "m2"): ("de", True),
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("data_region", "rus", "ISO 3166-1 alpha-2"),
        ("data_region", 7, "ISO 3166-1 alpha-2"),
        ("stores_prompts", "no", "expected true or false"),
    ],
)
def test_catalog_refuses_malformed_residency_fields(field: str, value: Any, message: str) -> None:
    text = f"""
providers:
  - {{name: p, kind: openai, base_url: "http://p:8000/v1"}}
models:
  - {{id: a/b, provider: p, upstream: m, {field}: {value!r}}}
"""
    with pytest.raises(CatalogError, match=message) as info:
        catalog_load(parse_catalog(text.replace("'", '"')))
    assert f"models[0].{field}" in str(info.value)


def test_models_list_shows_region_and_retention(resident: LiveGateway) -> None:
    models = {m.id: m for m in resident.client().models.list().data}
    assert models["ru/zero"].deployments == [
        {"provider": "ru-zero", "data_region": "ru", "stores_prompts": False}
    ]
    assert models["foreign/gpt"].deployments == [
        {"provider": "abroad", "data_region": "us", "stores_prompts": True}
    ]
    assert models["unknown/region"].deployments[0]["data_region"] is None
    one = requests.get(resident.url + "/v1/models/ru/keeps", headers=resident.headers, timeout=5)
    assert one.json()["deployments"] == [
        {"provider": "ru-keeps", "data_region": "ru", "stores_prompts": True}
    ]


# --- routing -----------------------------------------------------------------


def test_ru_only_team_is_refused_a_foreign_model_before_any_byte_leaves(
    resident: LiveGateway, upstream_control: Any
) -> None:
    _policy("ru_only")
    for model in ("foreign/gpt", "unknown/region"):
        response = ask(resident, model)
        assert response.status_code == 403
        error = response.json()["error"]
        assert error["code"] == "data_policy_violation"
        assert "'ru_only'" in error["message"] and model in error["message"]
    assert response.headers["x-xrouter-attempts"] == "nowhere:skipped(data_region=undeclared)"
    assert upstream_control.stats()["requests_total"] == 0
    # Through the SDK it is a PermissionDeniedError like any other 403.
    with pytest.raises(openai.PermissionDeniedError) as info:
        resident.client().chat.completions.create(
            model="foreign/gpt", messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.body["code"] == "data_policy_violation"
    assert upstream_control.stats()["requests_total"] == 0


def test_a_foreign_model_falls_back_to_its_ru_fallback_and_the_chain_says_why(
    resident: LiveGateway, upstream_control: Any
) -> None:
    _policy("ru_only")
    response = ask(resident, "foreign/with-ru-fallback")
    assert response.status_code == 200
    assert response.headers["x-xrouter-provider"] == "ru-keeps"
    assert response.headers["x-xrouter-attempts"] == "abroad:skipped(data_region=us), ru-keeps:200"
    assert upstream_control.stats()["requests_total"] == 1
    [row] = _usage_rows()
    assert row.provider == "ru-keeps"
    assert row.attempts[0]["skipped"] == "data_region=us"
    assert row.attempts[0]["provider"] == "abroad"
    assert "skipped" not in row.attempts[1]


def test_auto_routes_a_ru_only_team_only_to_ru_deployments(
    resident: LiveGateway, upstream_control: Any, settings: Any
) -> None:
    settings.XROUTER_MAX_ATTEMPTS = 10
    _policy("ru_only")
    upstream_control.set_config(fault="http_503")
    # Every compliant deployment fails: the chain shows each foreign or
    # undeclared one skipped and only ru ones tried.
    response = ask(resident, "xrouter/auto")
    assert response.status_code == 503
    chain = response.headers["x-xrouter-attempts"].split(", ")
    tried = [entry for entry in chain if "skipped" not in entry]
    assert tried and all(entry.split(":")[0] in ("ru-keeps", "ru-zero") for entry in tried)
    assert "abroad:skipped(data_region=us)" in chain
    assert "nowhere:skipped(data_region=undeclared)" in chain
    sent = upstream_control.stats()["requests_total"]
    assert sent == len(tried)
    upstream_control.reset()
    served = {ask(resident, "xrouter/auto").headers["x-xrouter-provider"] for _ in range(3)}
    assert served <= {"ru-keeps", "ru-zero"}


def test_ru_no_retention_skips_ru_deployments_that_keep_data(
    resident: LiveGateway, upstream_control: Any
) -> None:
    _policy("ru_no_retention")
    response = ask(resident, "ru/mixed")
    assert response.status_code == 200
    assert response.headers["x-xrouter-attempts"] == "ru-keeps:skipped(stores_prompts), ru-zero:200"
    refused = ask(resident, "ru/keeps")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "data_policy_violation"
    assert "'ru_no_retention'" in refused.json()["error"]["message"]
    assert upstream_control.stats()["requests_total"] == 1


def test_data_collection_deny_tightens_an_any_team_per_request(
    resident: LiveGateway, upstream_control: Any
) -> None:
    assert ask(resident, "foreign/gpt").status_code == 200
    denied = ask(resident, "foreign/gpt", provider={"data_collection": "deny"})
    assert denied.status_code == 403
    assert "any + data_collection: deny" in denied.json()["error"]["message"]
    served = ask(resident, "ru/mixed", provider={"data_collection": "deny"})
    assert served.headers["x-xrouter-provider"] == "ru-zero"
    # Streams are routed by the same check.
    with requests.post(
        resident.url + "/v1/chat/completions",
        headers=resident.headers,
        json={
            "model": "ru/keeps",
            "stream": True,
            "provider": {"data_collection": "deny"},
            "messages": [{"role": "user", "content": "hi"}],
        },
        timeout=10,
        stream=True,
    ) as stream:
        assert stream.status_code == 403
        assert stream.json()["error"]["code"] == "data_policy_violation"
    assert upstream_control.stats()["requests_total"] == 2


def test_data_collection_allow_does_not_loosen_a_ru_only_team(resident: LiveGateway) -> None:
    _policy("ru_only")
    response = ask(resident, "foreign/gpt", provider={"data_collection": "allow"})
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("provider", "param"),
    [("deny", "provider"), ({"data_collection": "never"}, "provider.data_collection")],
)
def test_malformed_provider_preferences_are_400(
    resident: LiveGateway, provider: Any, param: str
) -> None:
    response = ask(resident, "ru/keeps", provider=provider)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_embeddings_follow_the_policy_too(
    gateway: LiveGateway, load_catalog: Any, upstream: Any, upstream_control: Any
) -> None:
    load_catalog(f"""
providers:
  - {{name: abroad, kind: openai, base_url: "{upstream.base_url}/v1",
      api_key_env: TEST_UPSTREAM_KEY, data_region: us}}
models:
  - {{id: foreign/embed, type: embedding, provider: abroad, upstream: text-embedding-mock}}
""")
    _policy("ru_only")
    response = requests.post(
        gateway.url + "/v1/embeddings",
        headers=gateway.headers,
        json={"model": "foreign/embed", "input": "паспорт"},
        timeout=10,
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "data_policy_violation"
    assert upstream_control.stats()["requests_total"] == 0
