from __future__ import annotations

from decimal import Decimal

import pytest

from routing.models import Deployment, Model, Provider
from routing.services import CatalogError, catalog_load, catalog_load_file, parse_catalog
from routing.table import get_table, reset_table

pytestmark = pytest.mark.django_db

CATALOG = """
providers:
  - name: local
    kind: openai
    base_url: http://127.0.0.1:18080/v1
    api_key_env: LOCAL_API_KEY
models:
  - id: local/mock
    provider: local
    upstream: gpt-mock
"""


def test_the_documented_minimal_catalog_loads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG)
    result = catalog_load_file(path)
    assert (result.providers, result.models) == (1, 1)
    provider = Provider.objects.get()
    assert (provider.name, provider.kind, provider.api_key_env) == (
        "local",
        "openai",
        "LOCAL_API_KEY",
    )
    deployment = Deployment.objects.get()
    assert (deployment.model.model_id, deployment.upstream) == ("local/mock", "gpt-mock")


def test_loading_twice_changes_nothing() -> None:
    catalog_load(parse_catalog(CATALOG))
    before = list(Deployment.objects.values())
    catalog_load(parse_catalog(CATALOG))
    assert list(Deployment.objects.values()) == before
    assert Model.objects.count() == 1


def test_models_dropped_from_the_file_are_retired_not_deleted() -> None:
    catalog_load(
        parse_catalog(
            CATALOG
            + """
  - id: local/other
    provider: local
    upstream: gpt-mock-large
"""
        )
    )
    result = catalog_load(parse_catalog(CATALOG))
    assert result.retired == 1
    assert Model.objects.get(model_id="local/other").enabled is False


def test_full_format_with_pricing_and_deployments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_API_KEY", "x")
    catalog_load(
        parse_catalog("""
providers:
  - {name: a, kind: openai, base_url: "http://127.0.0.1:1/v1"}
  - {name: b, kind: openai, base_url: "http://127.0.0.1:2/v1", options: {read_timeout: 7}}
models:
  - id: team/model
    name: Team model
    context_length: 8192
    pricing: {prompt: 0.25, completion: "1.5"}
    deployments:
      - {provider: b, upstream: m2, priority: 1}
      - {provider: a, upstream: m1, priority: 0}
""")
    )
    model = Model.objects.get()
    assert (model.prompt_price, model.completion_price) == (Decimal("0.25"), Decimal("1.5"))
    reset_table()
    route = get_table().models["team/model"]
    assert [d.provider for d in route.deployments] == ["a", "b"]
    assert get_table().providers["b"].config.read_timeout == 7.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("providers: [1]", "expected a mapping"),
        ("[1, 2]", "expected a mapping"),
        ("providers:\n  - {name: x, kind: nope, base_url: 'http://h'}", "kind"),
        (
            "providers:\n  - {name: x, kind: openai, base_url: 'http://h', secret: 1}",
            "unknown field",
        ),
        ("models:\n  - {id: a/b, provider: missing, upstream: u}", "unknown provider"),
        ("models:\n  - {id: a/b}", "unknown provider"),
        ("models:\n  - {id: 'bad id!', provider: p, upstream: u}", "model_id"),
        ("providers:\n  - {name: x, kind: openai, base_url: 'ftp://h/x'}", "base_url"),
        (
            "providers:\n  - {name: x, kind: openai, base_url: 'http://h', api_key_env: lower}",
            "api_key_env",
        ),
        ("models: [{id: a/b, pricing: {prompt: -1}}]", "negative"),
        ("key: [unclosed", "YAML"),
    ],
)
def test_malformed_catalogs_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        data = parse_catalog(text)
        catalog_load(
            {"providers": [{"name": "p", "kind": "openai", "base_url": "http://h"}], **data}
            if "provider: p" in text
            else data
        )


def test_a_bad_catalog_changes_nothing() -> None:
    catalog_load(parse_catalog(CATALOG))
    with pytest.raises(CatalogError):
        catalog_load(parse_catalog(CATALOG + "  - {id: x/y, provider: nobody, upstream: u}\n"))
    assert list(Model.objects.values_list("model_id", flat=True)) == ["local/mock"]


def test_missing_credential_marks_the_provider_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_API_KEY", raising=False)
    catalog_load(parse_catalog(CATALOG))
    reset_table()
    assert "LOCAL_API_KEY" in get_table().providers["local"].unavailable


def test_catalog_edits_reach_the_table() -> None:
    catalog_load(parse_catalog(CATALOG))
    reset_table()
    assert "local/mock" in get_table().models
    Model.objects.filter(model_id="local/mock").update(enabled=False)
    from routing.table import catalog_version_bump

    catalog_version_bump()
    assert "local/mock" not in get_table().models
