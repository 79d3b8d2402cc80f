"""The audit log: what is recorded, by whom, from where, and who may read it.

Each change goes through the dashboard (or the service the dashboard
calls) and the test reads the event back: actor, client address, action,
target and the before/after of only the fields that changed. Secrets never
appear, the event shares the change's transaction, other teams see
nothing, members are refused, and old events are purged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import transaction
from django.test import Client, override_settings
from django.utils import timezone

from accounts.audit.services import audit_purge, audit_record
from accounts.models import AuditEvent, Membership, Team
from accounts.oauth.services import oauth_application_register
from accounts.services import team_invitation_create, team_limits_update
from keys.models import ApiKey
from keys.services import api_key_create
from routing.tasks import audit_purge as audit_purge_task
from tests.accounts.cast import Cast, build_cast
from tests.accounts.oauth.conftest import REDIRECT, OAuthClient
from tests.conftest import openai_catalog

pytestmark = pytest.mark.django_db

Action = AuditEvent.Action


@pytest.fixture
def cast(team: Team, other_team: Team, load_catalog: Callable[[str], None]) -> Cast:
    load_catalog(openai_catalog("http://127.0.0.1:9"))
    return build_cast(team=team, other_team=other_team)


@pytest.fixture
def alice(cast: Cast) -> Client:
    return cast.client_for(cast.alice, cast.team)


def events(team: Team, action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(team=team, action=action).order_by("id"))


def test_key_created_in_the_dashboard_names_actor_ip_and_settings(cast: Cast) -> None:
    """Creating a key records alice, her address and the key's settings; no secret."""
    client = cast.client_for(cast.alice, cast.team)
    response = client.post(
        "/keys/new/",
        {"name": "ci", "rpm_limit": "30", "budget_rub": "12.50"},
        REMOTE_ADDR="203.0.113.7",
    )
    assert response.status_code == 200
    plaintext = response.context["plaintext"]
    key = ApiKey.objects.get(name="ci")
    [event] = events(cast.team, Action.KEY_CREATED)[-1:]
    assert event.actor == cast.alice and event.actor_label == "alice"
    assert event.actor_kind == "user"
    assert event.client_ip == "203.0.113.7"
    assert (event.target_type, event.target_id) == ("key", str(key.public_id))
    assert event.target_label == f"ci ({key.masked})"
    assert event.changes["rpm_limit"] == {"before": None, "after": 30}
    assert event.changes["budget_rub"] == {"before": None, "after": "12.50"}
    assert event.changes["name"] == {"before": None, "after": "ci"}
    dumped = json.dumps(event.changes) + event.target_label
    assert plaintext not in dumped and key.key_hash not in dumped


@override_settings(XROUTER_TRUSTED_PROXIES=["10.0.0.0/8"])
def test_client_ip_is_read_through_trusted_proxies(cast: Cast) -> None:
    """Behind a trusted proxy the client address is the forwarded one."""
    client = cast.client_for(cast.alice, cast.team)
    key = cast.alice_key.api_key
    client.post(
        f"/keys/{key.public_id}/revoke/",
        REMOTE_ADDR="10.1.2.3",
        HTTP_X_FORWARDED_FOR="198.51.100.4",
    )
    [event] = events(cast.team, Action.KEY_REVOKED)
    assert event.client_ip == "198.51.100.4"
    assert event.actor == cast.alice
    assert event.changes["revoked_at"]["before"] is None


def test_rotation_is_one_event_naming_both_keys(cast: Cast, alice: Client) -> None:
    """Rotating records key.rotated (not a creation plus a revocation)."""
    old = cast.alice_key.api_key
    before = AuditEvent.objects.count()
    response = alice.post(f"/keys/{old.public_id}/rotate/")
    assert response.status_code == 200
    new = ApiKey.objects.filter(team=cast.team, revoked_at__isnull=True).exclude(pk=old.pk).get()
    assert AuditEvent.objects.count() == before + 1
    [event] = events(cast.team, Action.KEY_ROTATED)
    assert event.changes == {"key": {"before": old.masked, "after": new.masked}}
    assert response.context["plaintext"] not in json.dumps(event.changes)


def test_key_edit_splits_limits_from_other_settings(cast: Cast, alice: Client) -> None:
    """One save: a limits event and a settings event, each with only what changed."""
    key = cast.alice_key.api_key
    response = alice.post(
        f"/keys/{key.public_id}/",
        {
            "name": "acme prod v2",
            "rpm_limit": "60",
            "budget_rub": "100",
            "budget_period": "weekly",
            "model-TOTAL_FORMS": "1",
            "model-INITIAL_FORMS": "0",
            "model-0-model": "local/mock",
            "model-0-tpm": "5000",
        },
    )
    assert response.status_code == 302, response.context["form"].errors
    [limits] = events(cast.team, Action.KEY_LIMITS_CHANGED)
    assert limits.changes == {
        "budget_period": {"before": "monthly", "after": "weekly"},
        "budget_rub": {"before": None, "after": "100.00"},
        "model_limits": {"before": {}, "after": {"local/mock": {"tpm": 5000}}},
        "rpm_limit": {"before": None, "after": 60},
    }
    [settings_event] = events(cast.team, Action.KEY_UPDATED)
    assert settings_event.changes == {"name": {"before": "acme prod", "after": "acme prod v2"}}
    # Saving the same values again records nothing.
    alice.post(
        f"/keys/{key.public_id}/",
        {"name": "acme prod v2", "rpm_limit": "60", "budget_rub": "100", "budget_period": "weekly"},
    )
    assert len(events(cast.team, Action.KEY_LIMITS_CHANGED)) == 1
    assert len(events(cast.team, Action.KEY_UPDATED)) == 1


def test_team_limits_and_budget_are_two_events(cast: Cast) -> None:
    team_limits_update(team=cast.team, by=cast.carol, rpm_limit=100, budget_rub=Decimal("500.5"))
    [caps] = events(cast.team, Action.TEAM_LIMITS_CHANGED)
    [budget] = events(cast.team, Action.TEAM_BUDGET_CHANGED)
    assert caps.changes == {"rpm_limit": {"before": None, "after": 100}}
    assert budget.changes == {"budget_rub": {"before": None, "after": "500.50"}}
    assert caps.actor == budget.actor == cast.carol
    assert (caps.target_type, caps.target_id) == ("team", cast.team.slug)


def test_member_invited_role_changed_removed_and_left(cast: Cast, alice: Client) -> None:
    team_invitation_create(
        team=cast.team, created_by=cast.alice, role="admin", email="new@example.com"
    )
    [invited] = events(cast.team, Action.MEMBER_INVITED)
    assert invited.changes["role"]["after"] == "admin"
    assert invited.target_label == "new@example.com"
    assert "token" not in json.dumps(invited.changes)

    bob = Membership.objects.get(team=cast.team, user=cast.bob)
    assert alice.post(f"/accounts/members/{bob.pk}/role/", {"role": "admin"}).status_code == 302
    [changed] = events(cast.team, Action.MEMBER_ROLE_CHANGED)
    assert changed.changes == {"role": {"before": "member", "after": "admin"}}
    assert (changed.target_label, changed.actor) == ("bob", cast.alice)

    assert alice.post(f"/accounts/members/{bob.pk}/remove/").status_code == 302
    [removed] = events(cast.team, Action.MEMBER_REMOVED)
    assert removed.changes == {"role": {"before": "admin", "after": None}}
    assert removed.target_label == "bob"

    carol = cast.client_for(cast.carol, cast.team)
    assert carol.post("/accounts/leave/").status_code == 302
    [left] = events(cast.team, Action.MEMBER_LEFT)
    assert (left.actor, left.target_label) == (cast.carol, "carol")


def test_oauth_consent_is_recorded_with_its_scopes(cast: Cast) -> None:
    app = oauth_application_register(
        name="Notes App", redirect_uris=[REDIRECT], client_type="public", owner=cast.alice
    )
    oauth = OAuthClient(browser=cast.client_for(cast.alice, cast.team), app=app)
    oauth.code(scope="chat usage:read")
    [event] = events(cast.team, Action.OAUTH_APP_AUTHORIZED)
    assert event.actor == cast.alice
    assert event.target_type == "oauth_app"
    assert event.target_id == oauth.app.application.client_id
    assert event.changes == {"scopes": {"before": None, "after": ["chat", "usage:read"]}}


def test_management_key_is_the_actor_of_its_api_calls(cast: Cast) -> None:
    mgmt = api_key_create(team=cast.team, name="ci bot", kind=ApiKey.Kind.MANAGEMENT)
    client = Client(headers={"authorization": f"Bearer {mgmt.plaintext}"})
    key = cast.alice_key.api_key
    response = client.patch(
        f"/api/v1/keys/{key.public_id}",
        data=json.dumps({"rpm_limit": 7}),
        content_type="application/json",
        REMOTE_ADDR="192.0.2.9",
    )
    assert response.status_code == 200, response.content
    [event] = events(cast.team, Action.KEY_LIMITS_CHANGED)
    assert event.actor is None and event.actor_kind == "management_key"
    assert event.actor_label == f"ci bot ({mgmt.api_key.prefix}…)"
    assert event.client_ip == "192.0.2.9"


def test_event_rolls_back_with_its_change(cast: Cast) -> None:
    """The event is written in the change's transaction: both or neither."""
    before = AuditEvent.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        team_limits_update(team=cast.team, by=cast.alice, rpm_limit=5)
        raise RuntimeError("the change fails after the event was written")
    assert AuditEvent.objects.count() == before
    cast.team.refresh_from_db()
    assert cast.team.rpm_limit is None


def test_unknown_action_and_secret_fields_are_refused(cast: Cast) -> None:
    with pytest.raises(ValueError, match="unknown audit action 'key.stolen'"):
        audit_record(team=cast.team, action="key.stolen", target_type="key")
    event = audit_record(
        team=cast.team,
        action=Action.KEY_UPDATED,
        target_type="key",
        changes={"key_hash": {"before": "a", "after": "b"}, "name": {"before": "x", "after": "y"}},
    )
    assert event.changes == {"name": {"before": "x", "after": "y"}}
    assert event.actor_kind == "system" and event.client_ip is None


def test_page_lists_filters_and_paginates_for_owners_and_admins(cast: Cast, alice: Client) -> None:
    for i in range(55):
        audit_record(
            team=cast.team,
            action=Action.TEAM_LIMITS_CHANGED,
            target_type="team",
            target_label="Acme",
            changes={"rpm_limit": {"before": i, "after": i + 1}},
            actor=cast.carol,
        )
    audit_record(
        team=cast.other_team,
        action=Action.TEAM_BUDGET_CHANGED,
        target_type="team",
        target_label="Globex secret",
        actor=cast.mallory,
    )
    page = alice.get("/accounts/audit/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "Globex secret" not in body and "mallory" not in body
    assert len(page.context["page"].object_list) == 50
    assert "Page 1 of 2" in body
    second = alice.get("/accounts/audit/", {"action": "team.limits_changed", "page": "2"})
    assert len(second.context["page"].object_list) == 5
    # The oldest event, on the last page: 0 → 1.
    assert "<code>rpm_limit</code>: 0 → 1" in second.content.decode()
    by_actor = alice.get("/accounts/audit/", {"actor": "car"})
    assert by_actor.context["page"].paginator.count == 55
    assert alice.get("/accounts/audit/", {"actor": "nobody"}).context["page"].paginator.count == 0
    # A garbage action filter shows everything rather than failing.
    assert alice.get("/accounts/audit/", {"action": "nope"}).status_code == 200
    carol = cast.client_for(cast.carol, cast.team)
    assert carol.get("/accounts/audit/").status_code == 200


def test_members_cannot_read_the_audit_log(cast: Cast) -> None:
    bob = cast.client_for(cast.bob, cast.team)
    response = bob.get("/accounts/audit/")
    assert response.status_code == 403
    assert "Audit log" not in bob.get("/").content.decode()


def test_page_is_in_russian(cast: Cast, alice: Client) -> None:
    team_limits_update(team=cast.team, by=cast.alice, tpm_limit=1000)
    alice.cookies[settings.LANGUAGE_COOKIE_NAME] = "ru"
    body = alice.get("/accounts/audit/").content.decode()
    assert "Журнал аудита" in body
    assert "Изменены лимиты команды" in body


def test_purge_keeps_recent_events_and_honours_zero(cast: Cast) -> None:
    old = audit_record(team=cast.team, action=Action.KEY_UPDATED, target_type="key")
    recent = audit_record(team=cast.team, action=Action.KEY_UPDATED, target_type="key")
    AuditEvent.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=31))
    with override_settings(XROUTER_AUDIT_RETENTION_DAYS=0):
        assert audit_purge() == 0
    with override_settings(XROUTER_AUDIT_RETENTION_DAYS=30):
        assert audit_purge_task() == 1
    assert not AuditEvent.objects.filter(pk=old.pk).exists()
    assert AuditEvent.objects.filter(pk=recent.pk).exists()


def test_purge_runs_on_the_beat_schedule() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["audit-purge"]
    assert entry["task"] == "routing.audit_purge" == audit_purge_task.name
