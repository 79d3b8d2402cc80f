from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from keys import auth, tokens
from keys.services import CreatedKey, api_key_revoke, api_key_update
from routing.gateway.auth import authenticate_bearer
from xrouter_site.errors import AuthenticationFailed

pytestmark = pytest.mark.django_db


def test_resolves_a_valid_key(api_key: CreatedKey) -> None:
    principal = authenticate_bearer(f"Bearer {api_key.plaintext}")
    assert principal.key_id == api_key.api_key.pk
    assert principal.team_slug == "acme"
    assert principal.prefix == api_key.plaintext[:12]


def test_warm_lookup_runs_no_query(api_key: CreatedKey) -> None:
    auth.resolve_key(api_key.plaintext)
    with CaptureQueriesContext(connection) as queries:
        auth.resolve_key(api_key.plaintext)
    assert len(queries) == 0


def test_malformed_key_is_refused_before_any_lookup(api_key: CreatedKey) -> None:
    broken = api_key.plaintext[:-1] + ("A" if api_key.plaintext[-1] != "A" else "B")
    cache.clear()
    with CaptureQueriesContext(connection) as queries, pytest.raises(AuthenticationFailed) as info:
        auth.resolve_key(broken)
    assert info.value.reason == "malformed"
    assert len(queries) == 0
    assert auth._keys.local == {}


def test_unknown_key_miss_is_cached(db: None) -> None:
    unknown = tokens.generate().plaintext
    with pytest.raises(AuthenticationFailed):
        auth.resolve_key(unknown)
    auth.clear_local_cache()  # the shared tier (if any) still holds the miss
    with CaptureQueriesContext(connection) as queries, pytest.raises(AuthenticationFailed):
        auth.resolve_key(unknown)
        auth.resolve_key(unknown)
    from django.conf import settings

    assert len(queries) == (0 if settings.XROUTER_SHARED_CACHE else 1)


@pytest.mark.parametrize(
    "header", ["", "Basic abc", "Bearer", "Bearer   ", "bearer xr_live_short", "Token x"]
)
def test_bad_authorization_headers(header: str) -> None:
    with pytest.raises(AuthenticationFailed):
        authenticate_bearer(header)


def test_every_failure_has_the_same_client_body(
    api_key: CreatedKey, make_key: Callable[..., CreatedKey]
) -> None:
    revoked = make_key()
    api_key_revoke(api_key=revoked.api_key)
    bodies = []
    for candidate in ["garbage", tokens.generate().plaintext, revoked.plaintext]:
        with pytest.raises(AuthenticationFailed) as info:
            auth.resolve_key(candidate)
        bodies.append(info.value.as_dict())
    assert bodies[0] == bodies[1] == bodies[2]
    assert bodies[0]["error"]["code"] == "invalid_api_key"


def test_revocation_evicts_the_cached_key(api_key: CreatedKey) -> None:
    auth.resolve_key(api_key.plaintext)
    api_key_revoke(api_key=api_key.api_key)
    with pytest.raises(AuthenticationFailed):
        auth.resolve_key(api_key.plaintext)


def test_disabling_evicts_the_cached_key(api_key: CreatedKey) -> None:
    auth.resolve_key(api_key.plaintext)
    api_key_update(api_key=api_key.api_key, disabled=True)
    with pytest.raises(AuthenticationFailed):
        auth.resolve_key(api_key.plaintext)


def test_expiry_is_enforced_to_the_second(make_key: Callable[..., CreatedKey]) -> None:
    expires = timezone.now().replace(microsecond=0) + timedelta(minutes=5)
    key = make_key(expires_at=expires)
    with time_machine.travel(expires - timedelta(seconds=1)):
        assert auth.resolve_key(key.plaintext).key_id == key.api_key.pk
    with time_machine.travel(expires), pytest.raises(AuthenticationFailed) as info:
        auth.resolve_key(key.plaintext)
    assert info.value.reason == "expired"


def test_allowed_models_with_and_without_version(make_key: Callable[..., CreatedKey]) -> None:
    key = make_key(allowed_models=["yandex/yandexgpt", "local/mock:rc"])
    principal = auth.resolve_key(key.plaintext)
    assert principal.allows_model("yandex/yandexgpt") is True
    assert principal.allows_model("yandex/yandexgpt:rc") is True
    assert principal.allows_model("local/mock:rc") is True
    assert principal.allows_model("local/mock") is False
    assert principal.allows_model("local/mock:latest") is False
    assert principal.allows_model("other/model") is False


def test_a_key_with_no_model_list_may_use_every_model(api_key: CreatedKey) -> None:
    assert auth.resolve_key(api_key.plaintext).allows_model("any/model") is True
