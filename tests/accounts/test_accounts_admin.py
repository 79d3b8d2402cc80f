"""Django admin for operators, and the ``createapikey --management`` command."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

from accounts.models import Team, User
from keys.models import ApiKey
from tests.accounts.cast import Cast, build_cast


@pytest.fixture
def cast(team: Team, other_team: Team) -> Cast:
    return build_cast(team=team, other_team=other_team)


@pytest.fixture
def operator(cast: Cast) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw-root-123"))
    return client


@pytest.mark.parametrize(
    "url",
    [
        "/admin/accounts/user/",
        "/admin/accounts/user/?memberships__role__exact=owner&q=alice",
        "/admin/accounts/team/?q=acme",
        "/admin/accounts/membership/?role__exact=admin",
        "/admin/accounts/invitation/",
        "/admin/keys/apikey/?kind__exact=standard&q=prod",
        "/admin/routing/provider/",
        "/admin/routing/model/",
    ],
)
def test_admin_lists_with_filters(cast: Cast, operator: Client, url: str) -> None:
    """Every operator list page renders with its filters and search."""
    assert operator.get(url).status_code == 200


def test_admin_never_shows_the_key_secret(cast: Cast, operator: Client) -> None:
    """Key pages show the masked key but neither the plaintext nor its hash."""
    key = cast.alice_key.api_key
    for url in ("/admin/keys/apikey/", f"/admin/keys/apikey/{key.pk}/change/"):
        html = operator.get(url).content.decode()
        assert key.masked in html
        assert key.key_hash not in html and cast.alice_key.plaintext not in html
    assert operator.get("/admin/keys/apikey/add/").status_code == 403


def test_createapikey_management(cast: Cast) -> None:
    """``--management`` prints a key for /api/v1/ that /v1/ refuses."""
    out = StringIO()
    call_command("createapikey", "--team", "acme", "--name", "ci", "--management", stdout=out)
    plaintext = out.getvalue().strip()
    assert ApiKey.objects.get(name="ci").kind == ApiKey.Kind.MANAGEMENT
    client = Client(headers={"authorization": f"Bearer {plaintext}"})
    assert client.get("/api/v1/teams/current").json()["data"]["slug"] == "acme"
    assert client.get("/v1/models").status_code == 401
