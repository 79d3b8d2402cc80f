from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from accounts.models import Team
from keys import tokens
from keys.models import ApiKey
from keys.services import api_key_create, api_key_revoke, api_key_rotate, api_key_update

pytestmark = pytest.mark.django_db


def test_create_stores_only_the_hash_and_display_parts(team: Team) -> None:
    created = api_key_create(team=team, name="ci")
    key = ApiKey.objects.get(pk=created.api_key.pk)
    assert key.key_hash == tokens.digest(created.plaintext)
    assert key.prefix == created.plaintext[:12]
    assert key.last4 == created.plaintext[-4:]
    # No column of any row holds the plaintext or its secret payload.
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM keys_apikey")
        rows = cursor.fetchall()
    dump = repr(rows)
    assert created.plaintext not in dump
    assert created.plaintext[12:-4] not in dump


def test_plaintext_is_not_retrievable_after_creation(team: Team) -> None:
    created = api_key_create(team=team, name="ci")
    key = ApiKey.objects.get(pk=created.api_key.pk)
    assert created.plaintext not in repr(vars(key))
    assert str(key) == f"ci ({key.prefix}…{key.last4})"


def test_create_rejects_an_expiry_in_the_past(team: Team) -> None:
    with pytest.raises(ValidationError, match="future"):
        api_key_create(team=team, name="old", expires_at=timezone.now() - timedelta(seconds=1))


def test_revoke_is_idempotent(team: Team) -> None:
    key = api_key_create(team=team, name="k").api_key
    api_key_revoke(api_key=key)
    first = key.revoked_at
    api_key_revoke(api_key=key)
    key.refresh_from_db()
    assert key.revoked_at == first
    assert key.is_usable() is False


def test_rotate_keeps_settings_and_revokes_the_old_key(team: Team) -> None:
    old = api_key_create(
        team=team,
        name="svc",
        rpm_limit=10,
        tpm_limit=1000,
        budget_rub=Decimal("12.50"),
        allowed_models=["local/mock"],
    ).api_key
    new = api_key_rotate(api_key=old)
    old.refresh_from_db()
    assert old.revoked_at is not None
    fresh = new.api_key
    assert (
        fresh.name,
        fresh.rpm_limit,
        fresh.tpm_limit,
        fresh.budget_rub,
        fresh.allowed_models,
    ) == ("svc", 10, 1000, Decimal("12.50"), ["local/mock"])
    assert fresh.key_hash != old.key_hash
    with pytest.raises(ValidationError, match="revoked"):
        api_key_rotate(api_key=old)


def test_update_changes_only_allowed_fields(team: Team) -> None:
    key = api_key_create(team=team, name="k").api_key
    api_key_update(api_key=key, rpm_limit=5, allowed_models=[" b ", "a", "a"])
    key.refresh_from_db()
    assert key.rpm_limit == 5
    assert key.allowed_models == ["a", "b"]
    with pytest.raises(ValidationError, match="key_hash"):
        api_key_update(api_key=key, key_hash="x")
    with pytest.raises(ValidationError, match="team"):
        api_key_update(api_key=key, team=team)


def test_createapikey_prints_only_the_key() -> None:
    out = StringIO()
    call_command(
        "createapikey",
        "--team",
        "new-team",
        "--name",
        "script",
        "--rpm",
        "60",
        "--tpm",
        "5000",
        "--budget",
        "99.90",
        "--expires",
        "2099-01-01T00:00:00Z",
        "--models",
        "a/b, c/d",
        stdout=out,
    )
    plaintext = out.getvalue().strip()
    assert tokens.is_well_formed(plaintext)
    key = ApiKey.objects.get(key_hash=tokens.digest(plaintext))
    assert key.team.slug == "new-team"
    assert (key.rpm_limit, key.tpm_limit, key.budget_rub) == (60, 5000, Decimal("99.90"))
    assert key.allowed_models == ["a/b", "c/d"]
    assert key.expires_at is not None and key.expires_at.year == 2099


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rpm", "0"], "at least 1"),
        (["--rpm", "x"], "whole number"),
        (["--budget", "-1"], "negative"),
        (["--budget", "lots"], "not a number"),
        (["--expires", "tomorrow"], "ISO"),
        (["--expires", "2001-01-01T00:00:00Z"], "future"),
    ],
)
def test_createapikey_rejects_bad_options(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("createapikey", "--team", "t", "--name", "n", *args, stdout=StringIO())
