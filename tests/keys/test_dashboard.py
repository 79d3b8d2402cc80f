"""Key dashboard pages: list, create (secret shown once), edit, revoke, rotate.

Authorization: team A's users get 404 for team B's keys on every page and
method, and members read but cannot create, change or revoke (403).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import Team
from keys.models import ApiKey
from keys.services import api_key_create
from tests.accounts.cast import Cast, build_cast
from tests.conftest import openai_catalog


@pytest.fixture
def cast(team: Team, other_team: Team, load_catalog: Callable[[str], None]) -> Cast:
    load_catalog(openai_catalog("http://127.0.0.1:9"))
    return build_cast(team=team, other_team=other_team)


@pytest.fixture
def alice(cast: Cast) -> Client:
    return cast.client_for(cast.alice)


def key_url(key: ApiKey, action: str = "") -> str:
    return f"/keys/{key.public_id}/" + (f"{action}/" if action else "")


def test_pages_need_login(cast: Cast) -> None:
    """Anonymous visitors are sent to the login page."""
    for url in ("/", "/keys/", "/keys/new/", key_url(cast.alice_key.api_key)):
        response = Client().get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/?next=")


def test_home_shows_keys_usage_and_models(cast: Cast, alice: Client) -> None:
    """Home lists the team's keys, counts, last use and the catalog with prices."""
    ApiKey.objects.filter(pk=cast.alice_key.api_key.pk).update(last_used_at=timezone.now())
    html = alice.get("/").content.decode()
    assert "acme prod" in html and cast.alice_key.api_key.masked in html
    assert "globex prod" not in html
    # 0.5 and 1.5 RUB per 1K tokens, shown per million with two decimals.
    assert "local/mock" in html
    assert '<td class="num">500.00</td>' in html and '<td class="num">1,500.00</td>' in html
    assert "key used in the last 24 hours" in html and "just now" in html


def test_list_search_and_status_filter(cast: Cast, alice: Client) -> None:
    """Search matches names; the status filter splits active, revoked, expired."""
    revoked = api_key_create(team=cast.team, name="old one").api_key
    revoked.revoked_at = timezone.now()
    revoked.save()
    expired = api_key_create(team=cast.team, name="temp").api_key
    ApiKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(hours=1))

    def names(query: str) -> set[str]:
        response = alice.get(f"/keys/?{query}")
        assert response.status_code == 200
        return {k.name for k in response.context["page"].object_list}

    assert names("") == {"acme prod", "old one", "temp"}
    assert names("status=active") == {"acme prod"}
    assert names("status=revoked") == {"old one"}
    assert names("status=expired") == {"temp"}
    assert names("q=PROD") == {"acme prod"}
    assert names("q=globex") == set()
    assert names("status=bogus") == {"acme prod", "old one", "temp"}  # ignored, not 500


def test_create_shows_secret_once(cast: Cast, alice: Client) -> None:
    """The plaintext is in the creation response only; later pages mask it."""
    expires = (timezone.now() + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
    response = alice.post(
        "/keys/new/",
        {
            "name": "worker",
            "expires_at": expires,
            "allowed_models": ["local/mock"],
            "rpm_limit": "30",
            "tpm_limit": "",
            "budget_rub": "99.50",
        },
    )
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    plaintext = response.context["plaintext"]
    html = response.content.decode()
    assert plaintext in html and "shown only once" in html
    key = ApiKey.objects.get(name="worker")
    assert (key.team, key.created_by, key.kind) == (cast.team, cast.alice, "standard")
    assert (key.rpm_limit, key.allowed_models, str(key.budget_rub)) == (30, ["local/mock"], "99.50")
    assert key.expires_at is not None
    for url in ("/", "/keys/", key_url(key)):
        page = alice.get(url).content.decode()
        assert plaintext not in page and key.key_hash not in page
        assert key.masked in page


def test_create_management_key(cast: Cast, alice: Client) -> None:
    """The form can issue a management key, which works on /api/v1/ only."""
    response = alice.post("/keys/new/", {"name": "ci", "management": "on"})
    plaintext = response.context["plaintext"]
    assert ApiKey.objects.get(name="ci").kind == ApiKey.Kind.MANAGEMENT
    bearer = Client(headers={"authorization": f"Bearer {plaintext}"})
    assert bearer.get("/api/v1/keys").status_code == 200
    assert bearer.get("/v1/models").status_code == 401


@pytest.mark.parametrize(
    "field, value",
    [
        ("name", ""),
        ("name", "x" * 101),
        ("rpm_limit", "-1"),
        ("rpm_limit", "abc"),
        ("tpm_limit", "0"),
        ("budget_rub", "-5"),
        ("expires_at", "2001-01-01T00:00"),
        ("expires_at", "soon"),
        ("allowed_models", "nope/model"),
    ],
)
def test_create_rejects_bad_input(cast: Cast, alice: Client, field: str, value: str) -> None:
    """Bad values re-render the form with the error next to the field."""
    data = {"name": "k", field: value}
    response = alice.post("/keys/new/", data)
    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert 'aria-invalid="true"' in response.content.decode()
    assert not ApiKey.objects.filter(name="k").exists()


def test_edit_changes_limits(cast: Cast, alice: Client) -> None:
    """Owners edit name, limits, models and expiry; bad input changes nothing."""
    key = cast.alice_key.api_key
    response = alice.post(
        key_url(key), {"name": "acme prod", "rpm_limit": "120", "allowed_models": ["local/embed"]}
    )
    assert response.status_code == 302
    key.refresh_from_db()
    assert (key.rpm_limit, key.allowed_models) == (120, ["local/embed"])
    response = alice.post(key_url(key), {"name": "acme prod", "rpm_limit": "-3"})
    assert response.status_code == 200
    key.refresh_from_db()
    assert key.rpm_limit == 120


def test_revoke_confirms_then_revokes(cast: Cast, alice: Client) -> None:
    """GET asks for confirmation and changes nothing; POST revokes."""
    key = cast.alice_key.api_key
    page = alice.get(key_url(key, "revoke"))
    assert page.status_code == 200 and "cannot be undone" in page.content.decode()
    key.refresh_from_db()
    assert key.revoked_at is None
    assert alice.post(key_url(key, "revoke")).status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    gateway = Client(headers={"authorization": f"Bearer {cast.alice_key.plaintext}"})
    assert gateway.get("/v1/models").status_code == 401


def test_rotate_issues_new_secret_with_same_settings(cast: Cast, alice: Client) -> None:
    """Rotation revokes the old key and shows a new secret with the same limits."""
    old = cast.alice_key.api_key
    ApiKey.objects.filter(pk=old.pk).update(rpm_limit=7, allowed_models=["local/mock"])
    response = alice.post(key_url(old, "rotate"))
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    new_key = response.context["api_key"]
    assert (new_key.name, new_key.rpm_limit, new_key.allowed_models) == (
        "acme prod",
        7,
        ["local/mock"],
    )
    old.refresh_from_db()
    assert old.revoked_at is not None
    gateway = Client(headers={"authorization": f"Bearer {response.context['plaintext']}"})
    assert gateway.get("/v1/models").status_code == 200


@pytest.mark.parametrize("action", ["", "revoke", "rotate"])
@pytest.mark.parametrize("method", ["get", "post"])
def test_other_teams_key_is_404(cast: Cast, alice: Client, action: str, method: str) -> None:
    """Team A's owner gets 404 on every page of team B's key and changes nothing."""
    theirs = cast.mallory_key.api_key
    response = getattr(alice, method)(key_url(theirs, action), {"name": "pwned"})
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert (theirs.name, theirs.revoked_at) == ("globex prod", None)
    assert ApiKey.objects.filter(team=cast.other_team).count() == 1


def test_member_reads_but_cannot_change(cast: Cast) -> None:
    """Members see keys read-only; create, edit, revoke and rotate are 403."""
    bob = cast.client_for(cast.bob)
    key = cast.alice_key.api_key
    assert bob.get("/keys/").status_code == 200
    page = bob.get(key_url(key))
    assert page.status_code == 200
    html = page.content.decode()
    assert "disabled" in html and ">Save<" not in html and "/revoke/" not in html
    assert bob.get("/keys/new/").status_code == 403
    assert bob.post("/keys/new/", {"name": "mine"}).status_code == 403
    assert bob.post(key_url(key), {"name": "renamed"}).status_code == 403
    assert bob.post(key_url(key, "revoke")).status_code == 403
    assert bob.post(key_url(key, "rotate")).status_code == 403
    key.refresh_from_db()
    assert (key.name, key.revoked_at) == ("acme prod", None)
    assert not ApiKey.objects.filter(name="mine").exists()


def test_russian_labels(cast: Cast, alice: Client) -> None:
    """With Russian chosen, the dashboard speaks Russian."""
    alice.post("/i18n/setlang/", {"language": "ru", "next": "/keys/"})
    html = alice.get("/keys/").content.decode()
    assert 'lang="ru"' in html
    assert "API-ключи" in html and "Создать ключ" in html
