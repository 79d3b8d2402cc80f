from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from routing.models import Deployment, Model, Provider
from routing.services import CatalogError, catalog_load, catalog_load_file, parse_catalog
from routing.table import catalog_version_bump, get_table, reset_table

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


BIG = (
    "providers:\n"
    + "".join(
        f"  - {{name: p{i}, kind: openai, base_url: 'http://127.0.0.1:1/v1'}}\n" for i in range(3)
    )
    + "models:\n"
    + "".join(
        f"  - id: big/m{m:02d}\n    deployments:\n"
        + "".join(f"      - {{provider: p{i}, upstream: up, priority: {i}}}\n" for i in range(3))
        for m in range(20)
    )
)


def _writes(queries: list[dict[str, str]]) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].split()[0] in ("INSERT", "UPDATE", "DELETE")]


def test_an_unchanged_reload_writes_only_providers_and_the_retire_pass() -> None:
    """Each pod loads the file at start: unchanged models and deployments are not written.

    Before (issue 19) every model and deployment was saved again.
    """
    catalog_load(parse_catalog(BIG))
    with CaptureQueriesContext(connection) as ctx:
        catalog_load(parse_catalog(BIG))
    writes = _writes(ctx.captured_queries)
    # A save (or a bulk_update) sets every field, model_id first; the retire
    # pass only sets enabled = false on models the file no longer lists.
    assert not [w for w in writes if w.startswith('UPDATE "routing_model" SET "model_id"')]
    assert not [w for w in writes if w.startswith('INSERT INTO "routing_model"')]
    assert not [w for w in writes if '"routing_deployment"' in w.split(" SET ")[0]]


def test_a_changed_deployment_is_written_and_a_dropped_one_disabled() -> None:
    catalog_load(parse_catalog(BIG))
    changed = BIG.replace(
        "  - id: big/m07\n    deployments:\n"
        "      - {provider: p0, upstream: up, priority: 0}\n"
        "      - {provider: p1, upstream: up, priority: 1}\n"
        "      - {provider: p2, upstream: up, priority: 2}\n",
        "  - id: big/m07\n    deployments:\n"
        "      - {provider: p0, upstream: up, priority: 5}\n"
        "      - {provider: p1, upstream: up, priority: 1}\n",
    )
    assert changed != BIG
    catalog_load(parse_catalog(changed))
    rows = {
        d.provider.name: (d.priority, d.enabled)
        for d in Deployment.objects.filter(model__model_id="big/m07").select_related("provider")
    }
    assert rows == {"p0": (5, True), "p1": (1, True), "p2": (2, False)}
    # Another model's deployments stay as they were.
    assert Deployment.objects.filter(model__model_id="big/m08", enabled=True).count() == 3


def _models_without_signals(count: int) -> list[Model]:
    # bulk_create sends no post_save: nothing is queued before the test's block.
    return Model.objects.bulk_create(Model(model_id=f"bulk/m{i}") for i in range(count))


def test_one_catalog_bump_per_transaction_of_edits(
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Five saves in one transaction queue one catalog-version bump, not five."""
    models = _models_without_signals(5)
    with django_capture_on_commit_callbacks() as bumps, transaction.atomic():
        for model in models:
            model.display_name = "renamed"
            model.save()
    assert bumps == [catalog_version_bump]


def test_a_rolled_back_savepoint_does_not_take_the_bump_with_it(
    django_capture_on_commit_callbacks: Any,
) -> None:
    """The bump queued inside a rolled-back savepoint is dropped; the next save queues one."""
    first, second = _models_without_signals(2)
    with django_capture_on_commit_callbacks() as bumps, transaction.atomic():
        try:
            with transaction.atomic():
                first.save()
                raise RuntimeError("roll the savepoint back")
        except RuntimeError:
            pass
        assert not connection.run_on_commit or all(
            func is not catalog_version_bump for _s, func, _r in connection.run_on_commit
        )
        second.save()
    assert bumps == [catalog_version_bump]


def test_changed_and_retired_models_are_written_in_bulk() -> None:
    """A changed model is updated (its updated_at too); a retired one comes back enabled."""
    catalog_load(parse_catalog(BIG))
    before = Model.objects.get(model_id="big/m03").updated_at
    without = BIG.replace("  - id: big/m05\n", "  - id: big/m05\n    enabled: false\n")
    catalog_load(
        parse_catalog(without.replace("  - id: big/m03\n", "  - id: big/m03\n    name: Three\n"))
    )
    three = Model.objects.get(model_id="big/m03")
    assert (three.display_name, three.updated_at > before) == ("Three", True)
    assert Model.objects.get(model_id="big/m05").enabled is False
    catalog_load(parse_catalog(BIG))
    assert Model.objects.get(model_id="big/m05").enabled is True
    assert Model.objects.get(model_id="big/m03").display_name == ""
