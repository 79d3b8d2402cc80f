"""Management API: ``/api/v1/keys``, ``teams/current`` and ``models``.

Covers authentication by management key and session (OWASP API2), object
level authorization across teams (API1: 404, never 403), property level
authorization and mass assignment (API3), function level authorization for
members (API5) and every kind of bad input.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import Team
from keys.api_errors import SEMANTIC_CODES
from keys.models import ApiKey
from keys.services import api_key_revoke
from tests.accounts.cast import Cast, build_cast, management_key
from tests.conftest import openai_catalog

KEYS_URL = "/api/v1/keys"


@pytest.fixture
def cast(team: Team, other_team: Team, load_catalog: Callable[[str], None]) -> Cast:
    load_catalog(openai_catalog("http://127.0.0.1:9"))
    return build_cast(team=team, other_team=other_team)


@pytest.fixture
def mgmt(cast: Cast) -> Client:
    """A client that sends acme's management key."""
    key = management_key(cast.team)
    return Client(headers={"authorization": f"Bearer {key.plaintext}"})


def post(client: Client, url: str, body: Any) -> Any:
    return client.post(url, data=json.dumps(body), content_type="application/json")


def patch(client: Client, url: str, body: Any) -> Any:
    return client.patch(url, data=json.dumps(body), content_type="application/json")


def detail_url(key: ApiKey) -> str:
    return f"{KEYS_URL}/{key.public_id}"


def assert_error(response: Any, status: int, code: str, param: str | None = None) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "code", "param"}
    assert body["error"]["code"] == code
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == param
    assert body["error"]["message"]


# --- Authentication ----------------------------------------------------------


def test_no_credential_gets_401_with_bearer_challenge(cast: Cast) -> None:
    """An anonymous call is refused with 401, our error shape and a challenge."""
    response = Client().get(KEYS_URL)
    assert_error(response, 401, "invalid_api_key")
    assert response["WWW-Authenticate"] == 'Bearer realm="xrouter"'


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer not-a-key",
        "Bearer xr_live_" + "A" * 49,  # right shape, wrong checksum
        "Basic YWxpY2U6cHc=",
    ],
)
def test_malformed_credentials_get_401(cast: Cast, header: str) -> None:
    """Malformed bearer values and other schemes do not authenticate."""
    response = Client(headers={"authorization": header}).get(KEYS_URL)
    assert_error(response, 401, "invalid_api_key")


def test_standard_key_cannot_call_management_api(cast: Cast) -> None:
    """A gateway key is refused on /api/v1/ exactly like an unknown key."""
    client = Client(headers={"authorization": f"Bearer {cast.alice_key.plaintext}"})
    assert_error(client.get(KEYS_URL), 401, "invalid_api_key")


def test_management_key_cannot_call_gateway(cast: Cast) -> None:
    """A management key gets the gateway's uniform 401 on /v1/."""
    key = management_key(cast.team)
    client = Client(headers={"authorization": f"Bearer {key.plaintext}"})
    response = client.get("/v1/models")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    standard = Client(headers={"authorization": f"Bearer {cast.alice_key.plaintext}"})
    assert standard.get("/v1/models").status_code == 200


def test_revoked_and_expired_management_keys_get_401(cast: Cast) -> None:
    """Revoking a management key ends its access on the next call."""
    key = management_key(cast.team)
    client = Client(headers={"authorization": f"Bearer {key.plaintext}"})
    assert client.get(KEYS_URL).status_code == 200
    api_key_revoke(api_key=key.api_key)
    assert_error(client.get(KEYS_URL), 401, "invalid_api_key")

    expiring = management_key(cast.team, name="short")
    ApiKey.objects.filter(pk=expiring.api_key.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    client = Client(headers={"authorization": f"Bearer {expiring.plaintext}"})
    assert_error(client.get(KEYS_URL), 401, "invalid_api_key")


def test_key_in_query_string_is_not_accepted(cast: Cast) -> None:
    """Keys travel only in the Authorization header."""
    key = management_key(cast.team)
    for param in ("api_key", "key", "access_token"):
        assert Client().get(f"{KEYS_URL}?{param}={key.plaintext}").status_code == 401


def test_session_write_needs_csrf_token(cast: Cast) -> None:
    """Session-authenticated writes without a CSRF token are refused."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(cast.alice)
    assert client.get(KEYS_URL).status_code == 200
    response = post(client, KEYS_URL, {"name": "csrf"})
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]["message"]
    assert not ApiKey.objects.filter(name="csrf").exists()


def test_session_write_with_csrf_token_works(cast: Cast) -> None:
    """The dashboard's own JavaScript can call the API with its CSRF token."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(cast.alice)
    client.get("/keys/")  # sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    response = client.post(
        KEYS_URL,
        data=json.dumps({"name": "from session"}),
        content_type="application/json",
        headers={"x-csrftoken": token},
    )
    assert response.status_code == 201
    assert ApiKey.objects.get(name="from session").created_by == cast.alice


# --- CRUD ---------------------------------------------------------------------


def test_create_returns_secret_once_and_it_calls_the_gateway(cast: Cast, mgmt: Client) -> None:
    """POST returns the plaintext once; later reads show only the label."""
    expires = (timezone.now() + timedelta(days=30)).replace(microsecond=0)
    response = post(
        mgmt,
        KEYS_URL,
        {
            "name": "ci runner",
            "limit": 1500.5,
            "expires_at": expires.isoformat(),
            "rpm_limit": 60,
            "tpm_limit": 10000,
            "allowed_models": ["local/mock"],
        },
    )
    assert response.status_code == 201, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    plaintext = body["key"]
    data = body["data"]
    api_key = ApiKey.objects.get(public_id=data["id"])
    assert api_key.team == cast.team
    assert api_key.kind == ApiKey.Kind.STANDARD
    assert api_key.created_by is None
    assert data == {
        "id": str(api_key.public_id),
        "name": "ci runner",
        "label": api_key.masked,
        "kind": "standard",
        "status": "active",
        "disabled": False,
        "playground": False,
        "limit": 1500.5,
        "rpm_limit": 60,
        "tpm_limit": 10000,
        "allowed_models": ["local/mock"],
        "pii_mode": "",
        "created_at": data["created_at"],
        "expires_at": data["expires_at"],
        "revoked_at": None,
        "last_used_at": None,
    }
    assert plaintext.startswith(api_key.prefix) and plaintext.endswith(api_key.last4)

    gateway = Client(headers={"authorization": f"Bearer {plaintext}"})
    assert gateway.get("/v1/models").status_code == 200

    for url in (KEYS_URL, detail_url(api_key)):
        text = mgmt.get(url).content.decode()
        assert plaintext not in text
        assert api_key.key_hash not in text
        assert "key_hash" not in text
        assert api_key.masked in text


def test_list_is_scoped_paginated_and_filtered(cast: Cast, mgmt: Client) -> None:
    """The list holds only the caller's team's keys, with search and status."""
    revoked = post(mgmt, KEYS_URL, {"name": "old batch"}).json()["data"]["id"]
    mgmt.delete(f"{KEYS_URL}/{revoked}")
    body = mgmt.get(KEYS_URL).json()
    names = {k["name"] for k in body["data"]}
    assert names == {"acme prod", "ci", "old batch"}
    assert body["total"] == 3 and body["offset"] == 0 and body["page_size"] == 50
    assert [k["name"] for k in mgmt.get(f"{KEYS_URL}?status=revoked").json()["data"]] == [
        "old batch"
    ]
    assert [k["name"] for k in mgmt.get(f"{KEYS_URL}?search=prod").json()["data"]] == ["acme prod"]
    page = mgmt.get(f"{KEYS_URL}?page_size=1&offset=1").json()
    assert len(page["data"]) == 1 and page["total"] == 3


@pytest.mark.parametrize(
    "query, param",
    [
        ("page_size=101", "page_size"),
        ("page_size=0", "page_size"),
        ("offset=-1", "offset"),
        ("offset=abc", "offset"),
        ("status=deleted", "status"),
        ("search=" + "x" * 101, "search"),
        ("team=globex", "team"),
    ],
)
def test_list_rejects_bad_query(cast: Cast, mgmt: Client, query: str, param: str) -> None:
    """Bad or unknown query parameters get 400 naming the parameter."""
    response = mgmt.get(f"{KEYS_URL}?{query}")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_retrieve_update_delete(cast: Cast, mgmt: Client) -> None:
    """GET, PATCH and DELETE act on the key; DELETE revokes it for good."""
    url = detail_url(cast.alice_key.api_key)
    assert mgmt.get(url).json()["data"]["name"] == "acme prod"
    response = patch(
        mgmt,
        url,
        {
            "name": "renamed",
            "disabled": True,
            "rpm_limit": None,
            "limit": 10,
            "allowed_models": ["local/embed"],
        },
    )
    assert response.status_code == 200, response.content
    data = response.json()["data"]
    assert (data["name"], data["disabled"], data["status"], data["limit"]) == (
        "renamed",
        True,
        "disabled",
        10.0,
    )
    gateway = Client(headers={"authorization": f"Bearer {cast.alice_key.plaintext}"})
    assert gateway.get("/v1/models").status_code == 401  # disabled

    assert patch(mgmt, url, {"disabled": False}).status_code == 200
    assert gateway.get("/v1/models").status_code == 200

    response = mgmt.delete(url)
    assert response.status_code == 200 and response.json() == {"deleted": True}
    assert gateway.get("/v1/models").status_code == 401
    # Deleted is gone from its URL (schemathesis' use-after-free check);
    # the list still shows it as revoked, for the record.
    for gone in (mgmt.get(url), mgmt.delete(url), patch(mgmt, url, {"name": "zombie"})):
        assert_error(gone, 404, "not_found")
    revoked = mgmt.get(f"{KEYS_URL}?status=revoked").json()["data"]
    assert [k["status"] for k in revoked if k["id"] == str(cast.alice_key.api_key.public_id)] == [
        "revoked"
    ]


def test_unlisted_methods_get_405(cast: Cast, mgmt: Client) -> None:
    """PUT and POST on a key, DELETE on the list: 405 and nothing changes."""
    url = detail_url(cast.alice_key.api_key)
    assert_error(mgmt.put(url, "{}", content_type="application/json"), 405, "method_not_allowed")
    assert_error(post(mgmt, url, {}), 405, "method_not_allowed")
    assert_error(mgmt.delete(KEYS_URL), 405, "method_not_allowed")
    assert_error(mgmt.post("/api/v1/models"), 405, "method_not_allowed")
    assert ApiKey.objects.get(pk=cast.alice_key.api_key.pk).revoked_at is None


# --- Bad input ----------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("team", 2),
        ("team_id", 2),
        ("key_hash", "0" * 64),
        ("created_by", 1),
        ("kind", "management"),
        ("prefix", "xr_live_AAAA"),
        ("public_id", str(uuid.uuid4())),
        ("id", str(uuid.uuid4())),
        ("revoked_at", None),
        ("is_admin", True),
        ("budget_rub", 5),
    ],
)
def test_mass_assignment_is_rejected(cast: Cast, mgmt: Client, field: str, value: Any) -> None:
    """Fields outside the allowlist get 400 on create and on update."""
    before = ApiKey.objects.count()
    assert_error(post(mgmt, KEYS_URL, {"name": "x", field: value}), 400, "unknown_field", field)
    assert ApiKey.objects.count() == before
    url = detail_url(cast.alice_key.api_key)
    assert_error(patch(mgmt, url, {"rpm_limit": 10**9, field: value}), 400, "unknown_field", field)
    key = ApiKey.objects.get(pk=cast.alice_key.api_key.pk)
    assert (key.team_id, key.kind, key.rpm_limit) == (cast.team.pk, "standard", None)


PAST = "2001-01-01T00:00:00Z"

BAD_CREATE_BODIES = [
    ({}, "name", "missing_required_parameter"),
    ({"name": ""}, "name", "invalid_value"),
    ({"name": None}, "name", "invalid_value"),
    ({"name": 123}, "name", "invalid_value"),
    ({"name": "x" * 101}, "name", "max_length"),
    ({"name": "k", "limit": -1}, "limit", "min_value"),
    ({"name": "k", "limit": "100"}, "limit", "invalid_value"),
    ({"name": "k", "limit": True}, "limit", "invalid_value"),
    ({"name": "k", "limit": 1e20}, "limit", "max_digits"),
    ({"name": "k", "limit": 0.001}, "limit", "max_decimal_places"),
    ({"name": "k", "rpm_limit": 0}, "rpm_limit", "min_value"),
    ({"name": "k", "rpm_limit": -5}, "rpm_limit", "min_value"),
    ({"name": "k", "rpm_limit": 2**31}, "rpm_limit", "max_value"),
    ({"name": "k", "rpm_limit": "60"}, "rpm_limit", "invalid_value"),
    ({"name": "k", "rpm_limit": 1.5}, "rpm_limit", "invalid_value"),
    ({"name": "k", "tpm_limit": True}, "tpm_limit", "invalid_value"),
    ({"name": "k", "tpm_limit": [1]}, "tpm_limit", "invalid_value"),
    ({"name": "k", "expires_at": PAST}, "expires_at", "in_past"),
    ({"name": "k", "expires_at": "next tuesday"}, "expires_at", "invalid_value"),
    ({"name": "k", "expires_at": 1893456000}, "expires_at", "invalid_value"),
    ({"name": "k", "allowed_models": "local/mock"}, "allowed_models", "invalid_type"),
    ({"name": "k", "allowed_models": [""]}, "allowed_models.0", "invalid_value"),
    ({"name": "k", "allowed_models": [7]}, "allowed_models.0", "invalid_value"),
    ({"name": "k", "allowed_models": ["nope/model"]}, "allowed_models", "model_not_found"),
    ({"name": "k", "allowed_models": ["x" * 201]}, "allowed_models.0", "max_length"),
    ({"name": "k", "allowed_models": ["local/mock"] * 101}, "allowed_models", "max_length"),
    ({"name": "k", "disabled": True}, "disabled", "unknown_field"),
]


@pytest.mark.parametrize("body, param, code", BAD_CREATE_BODIES)
def test_create_rejects_bad_input(
    cast: Cast, mgmt: Client, body: dict[str, Any], param: str, code: str
) -> None:
    """Each bad value gets 400 naming the field and creates nothing."""
    before = ApiKey.objects.count()
    expected = 422 if code in SEMANTIC_CODES else 400
    assert_error(post(mgmt, KEYS_URL, body), expected, code, param)
    assert ApiKey.objects.count() == before


@pytest.mark.parametrize(
    "body, param, code",
    [
        ({"disabled": "yes"}, "disabled", "invalid_value"),
        ({"disabled": 1}, "disabled", "invalid_value"),
        ({"name": ""}, "name", "invalid_value"),
        ({"name": "x" * 101}, "name", "max_length"),
        ({"rpm_limit": -1}, "rpm_limit", "min_value"),
        ({"limit": -0.01}, "limit", "min_value"),
        ({"expires_at": PAST}, "expires_at", "in_past"),
        ({"allowed_models": {"a": 1}}, "allowed_models", "invalid_type"),
    ],
)
def test_update_rejects_bad_input(
    cast: Cast, mgmt: Client, body: dict[str, Any], param: str, code: str
) -> None:
    """Bad updates get 400 and leave the key as it was."""
    url = detail_url(cast.alice_key.api_key)
    assert_error(patch(mgmt, url, body), 422 if code in SEMANTIC_CODES else 400, code, param)
    key = ApiKey.objects.get(pk=cast.alice_key.api_key.pk)
    assert (key.name, key.disabled, key.rpm_limit, key.budget_rub) == (
        "acme prod",
        False,
        None,
        None,
    )


@pytest.mark.parametrize(
    "raw, content_type, status, code",
    [
        ("{not json", "application/json", 400, "invalid_json"),
        ('{"name": NaN}', "application/json", 400, "invalid_json"),
        ("[1, 2]", "application/json", 400, "invalid_value"),
        ('"name"', "application/json", 400, "invalid_value"),
        ("name=k", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        ("<key/>", "application/xml", 415, "unsupported_media_type"),
    ],
)
def test_create_rejects_bad_bodies(
    cast: Cast, mgmt: Client, raw: str, content_type: str, status: int, code: str
) -> None:
    """Bodies that are not a JSON object are refused with our error shape."""
    assert_error(mgmt.post(KEYS_URL, data=raw, content_type=content_type), status, code)


# --- Authorization ------------------------------------------------------------


def test_other_teams_key_is_404_for_management_key(cast: Cast, mgmt: Client) -> None:
    """Team A's management key cannot read, change or revoke team B's key."""
    theirs = cast.mallory_key.api_key
    url = detail_url(theirs)
    assert_error(mgmt.get(url), 404, "not_found")
    assert_error(patch(mgmt, url, {"name": "pwned", "disabled": True}), 404, "not_found")
    assert_error(mgmt.delete(url), 404, "not_found")
    theirs.refresh_from_db()
    assert (theirs.name, theirs.disabled, theirs.revoked_at) == ("globex prod", False, None)
    assert str(theirs.public_id) not in mgmt.get(KEYS_URL).content.decode()
    # Same answer as an id that exists nowhere, and as a malformed id.
    assert_error(mgmt.get(f"{KEYS_URL}/{uuid.uuid4()}"), 404, "not_found")
    assert_error(mgmt.get(f"{KEYS_URL}/12345"), 404, "not_found")


def test_other_teams_key_is_404_for_session(cast: Cast) -> None:
    """A logged-in owner of team A gets 404 for team B's key, even as a manager."""
    client = cast.client_for(cast.alice)
    url = detail_url(cast.mallory_key.api_key)
    assert_error(client.get(url), 404, "not_found")
    assert_error(patch(client, url, {"name": "pwned"}), 404, "not_found")
    assert_error(client.delete(url), 404, "not_found")
    assert ApiKey.objects.get(pk=cast.mallory_key.api_key.pk).revoked_at is None


def test_session_cannot_switch_into_foreign_team(cast: Cast) -> None:
    """A session pointing at a team the user is not in falls back to their own team."""
    client = cast.client_for(cast.alice, team=cast.other_team)
    names = {k["name"] for k in client.get(KEYS_URL).json()["data"]}
    assert names == {"acme prod"}
    assert client.get("/api/v1/teams/current").json()["data"]["slug"] == "acme"


def test_member_can_read_but_not_write(cast: Cast) -> None:
    """A member lists keys; creating, changing and revoking get 403."""
    client = cast.client_for(cast.bob)
    assert client.get(KEYS_URL).status_code == 200
    url = detail_url(cast.alice_key.api_key)
    assert client.get(url).status_code == 200
    assert_error(post(client, KEYS_URL, {"name": "mine"}), 403, "permission_denied")
    assert_error(patch(client, url, {"rpm_limit": 10**6}), 403, "permission_denied")
    assert_error(client.delete(url), 403, "permission_denied")
    key = ApiKey.objects.get(pk=cast.alice_key.api_key.pk)
    assert (key.rpm_limit, key.revoked_at) == (None, None)
    assert not ApiKey.objects.filter(name="mine").exists()


def test_admin_can_write(cast: Cast) -> None:
    """Admins manage keys like owners."""
    client = cast.client_for(cast.carol)
    assert post(client, KEYS_URL, {"name": "carol's"}).status_code == 201


def test_user_without_team_gets_404(cast: Cast) -> None:
    """A user in no team has no keys to list."""
    from tests.accounts.cast import make_user

    client = Client()
    client.force_login(make_user("loner"))
    assert_error(client.get(KEYS_URL), 404, "not_found")
    assert_error(client.get("/api/v1/teams/current"), 404, "not_found")


# --- teams/current, models, schema ----------------------------------------------


def test_team_current(cast: Cast, mgmt: Client) -> None:
    """The current team with the caller's role; no member e-mails."""
    data = mgmt.get("/api/v1/teams/current").json()["data"]
    assert data == {
        "slug": "acme",
        "name": "Acme",
        "created_at": data["created_at"],
        "role": None,
        "authenticated_as": "management_key",
        "member_count": 3,
        "key_count": 2,
        "data_policy": "any",
        "pii_mode": "off",
    }
    session = cast.client_for(cast.bob).get("/api/v1/teams/current").json()["data"]
    assert (session["role"], session["authenticated_as"]) == ("member", "user")
    assert "@" not in json.dumps(session)


def test_models_lists_catalog_with_prices(cast: Cast, mgmt: Client) -> None:
    """Models carry ids, versions and prices in RUB per 1K tokens."""
    data = mgmt.get("/api/v1/models").json()["data"]
    by_id = {m["id"]: m for m in data}
    # The catalog may add built-in aliases (xrouter/auto...) on top of these.
    assert {"local/mock", "local/embed"} <= set(by_id)
    mock = by_id["local/mock"]
    assert mock["base_id"] == "local/mock" and mock["version"] is None
    assert mock["type"] == "chat"
    assert mock["pricing"] == {
        "prompt": "0.500000",
        "completion": "1.500000",
        "currency": "RUB",
        "unit": "1K tokens",
    }
    assert [m["id"] for m in mgmt.get("/api/v1/models?type=embedding").json()["data"]] == [
        "local/embed"
    ]
    assert_error(mgmt.get("/api/v1/models?type=image"), 400, "invalid_choice", "type")
    assert_error(Client().get("/api/v1/models"), 401, "invalid_api_key")


def test_unknown_api_path_is_json_404(cast: Cast, mgmt: Client) -> None:
    """Unknown paths under /api/v1/ answer in the same error shape."""
    assert_error(mgmt.get("/api/v1/nope"), 404, "not_found")
    assert_error(mgmt.get("/api/v1/keys/"), 404, "not_found")


def test_schema_and_docs_are_served_without_cdn(cast: Cast) -> None:
    """The OpenAPI schema lists every endpoint; docs load assets locally."""
    response = Client().get("/api/schema/", headers={"accept": "application/json"})
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert set(schema["paths"]) == {
        "/api/v1/audit",
        "/api/v1/generation",
        "/api/v1/keys",
        "/api/v1/keys/{public_id}",
        "/api/v1/teams/current",
        "/api/v1/models",
        "/api/v1/key",
        "/api/v1/credits",
        "/api/v1/auth/keys",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/responses",
        "/v1/responses/{id}",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/models",
        "/v1/models/{model_id}",
    }
    assert "managementKey" in schema["components"]["securitySchemes"]
    assert "key_hash" not in response.content.decode()
    for url in ("/api/docs/", "/api/redoc/"):
        html = Client().get(url).content.decode()
        assert "/static/drf_spectacular_sidecar/" in html
        assert "cdn." not in html and "unpkg" not in html
