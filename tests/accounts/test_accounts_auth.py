"""Sign-up, log-in throttling, log-out and passwords."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core import mail
from django.test import Client

from accounts.models import Membership, User
from accounts.services import team_get_or_create
from keys.services import api_key_create
from tests.accounts.cast import PASSWORD, make_user


def signup(client: Client, username: str = "dana", email: str = "dana@example.com") -> object:
    return client.post(
        "/accounts/signup/",
        {"username": username, "email": email, "password1": PASSWORD, "password2": PASSWORD},
    )


def test_signup_creates_user_and_logs_in(db: None) -> None:
    """Signing up logs the user in and sends them to create a team."""
    client = Client()
    response = signup(client)
    assert response.status_code == 302 and response["Location"] == "/accounts/teams/"
    user = User.objects.get(username="dana")
    assert user.email == "dana@example.com" and user.check_password(PASSWORD)
    assert client.get("/accounts/teams/").status_code == 200
    # Without a team the dashboard sends users to the teams page.
    assert client.get("/")["Location"] == "/accounts/teams/"


def test_first_signup_owns_the_demo_team_of_make_run(db: None, settings: Any) -> None:
    """With XROUTER_DEMO_TEAM set, the first account owns that team and sees its key."""
    settings.XROUTER_DEMO_TEAM = "demo"
    team, _created = team_get_or_create(slug="demo", name="Demo team")
    api_key_create(team=team, name="demo key (make run)")
    first = Client()
    signup(first)
    dana = Membership.objects.get(team=team)
    assert (dana.user.username, dana.role) == ("dana", Membership.Role.OWNER)
    assert "demo key (make run)" in first.get("/keys/").content.decode()
    # Only the first: a second account gets no way into the demo team.
    signup(Client(), username="erin", email="erin@example.com")
    assert list(Membership.objects.filter(team=team).values_list("user__username", flat=True)) == [
        "dana"
    ]


def test_signup_joins_no_team_without_the_demo_setting(db: None) -> None:
    """Outside ``make run`` on emulators a team named "demo" is nobody's by sign-up."""
    team, _created = team_get_or_create(slug="demo", name="Demo team")
    signup(Client())
    assert not Membership.objects.filter(team=team).exists()


@pytest.mark.parametrize(
    "data, field",
    [
        ({"username": "", "email": "e@example.com"}, "username"),
        ({"username": "erin", "email": "not-an-email"}, "email"),
        ({"username": "dana", "email": "e2@example.com"}, "username"),  # taken
        ({"username": "x" * 151, "email": "e3@example.com"}, "username"),
    ],
)
def test_signup_rejects_bad_input(db: None, data: dict[str, str], field: str) -> None:
    """Bad sign-ups re-render with an error on the field."""
    make_user("dana")
    response = Client().post(
        "/accounts/signup/", {**data, "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 200
    assert field in response.context["form"].errors


def test_signup_does_not_reveal_registered_emails(db: None) -> None:
    """A taken e-mail signs up exactly like a fresh one: no enumeration oracle."""
    make_user("dana")
    taken = signup(Client(), username="erin", email="DANA@example.com")
    fresh = signup(Client(), username="fay", email="fay@example.com")
    assert taken.status_code == fresh.status_code == 302  # type: ignore[attr-defined]
    assert taken["Location"] == fresh["Location"]  # type: ignore[index]
    assert User.objects.get(username="erin").email == "dana@example.com"
    # The existing account is untouched and still the one its owner resets.
    assert User.objects.get(username="dana").check_password(PASSWORD)


def test_signup_rejects_weak_password(db: None) -> None:
    """Django's password validators apply."""
    response = Client().post(
        "/accounts/signup/",
        {"username": "erin", "email": "e@example.com", "password1": "123", "password2": "123"},
    )
    assert "password2" in response.context["form"].errors
    assert not User.objects.filter(username="erin").exists()


def test_signup_next_is_only_followed_on_this_site(db: None) -> None:
    """An open redirect through ``next`` is refused."""
    response = Client().post(
        "/accounts/signup/",
        {
            "username": "erin",
            "email": "e@example.com",
            "password1": PASSWORD,
            "password2": PASSWORD,
            "next": "https://evil.example/",
        },
    )
    assert response["Location"] == "/accounts/teams/"


def test_login_and_logout(db: None) -> None:
    """Log-in rotates the session; log-out is a POST and ends it."""
    make_user("dana")
    client = Client()
    client.get("/accounts/login/")
    before = client.cookies.get("sessionid")
    response = client.post("/accounts/login/", {"username": "dana", "password": PASSWORD})
    assert response.status_code == 302
    assert client.cookies["sessionid"].value != (before.value if before else None)
    assert client.get("/accounts/teams/").status_code == 200
    assert client.get("/accounts/logout/").status_code == 405
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/accounts/teams/").status_code == 302


def test_login_is_throttled_per_username(db: None) -> None:
    """The fifth failure locks (dana, this address): even the right password is refused."""
    make_user("dana")
    client = Client()
    for _ in range(4):
        response = client.post("/accounts/login/", {"username": "dana", "password": "wrong"})
        assert response.status_code == 200
    response = client.post("/accounts/login/", {"username": "dana", "password": "wrong"})
    assert response.status_code == 429
    response = client.post("/accounts/login/", {"username": "dana", "password": PASSWORD})
    assert response.status_code == 429
    assert "Too many login attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session
    # Another account from the same address is not locked out by it.
    make_user("erin")
    response = client.post("/accounts/login/", {"username": "erin", "password": PASSWORD})
    assert response.status_code == 302


def test_login_is_throttled_per_address(db: None) -> None:
    """Spraying many usernames from one address is throttled too."""
    client = Client()
    codes = [
        client.post("/accounts/login/", {"username": f"u{i}", "password": "x"}).status_code
        for i in range(21)
    ]
    assert codes[:20] == [200] * 20 and codes[20] == 429


def test_password_change(db: None) -> None:
    """A logged-in user changes their password with the old one."""
    user = make_user("dana")
    client = Client()
    client.force_login(user)
    new = "another long passphrase 77"
    response = client.post(
        "/accounts/password/change/",
        {"old_password": PASSWORD, "new_password1": new, "new_password2": new},
    )
    assert response["Location"] == "/accounts/password/change/done/"
    user.refresh_from_db()
    assert user.check_password(new)


def test_password_reset_by_email(db: None) -> None:
    """The reset mail holds a one-time link that sets a new password."""
    user = make_user("dana")
    client = Client()
    response = client.post("/accounts/password/reset/", {"email": "dana@example.com"})
    assert response["Location"] == "/accounts/password/reset/sent/"
    assert len(mail.outbox) == 1
    link = re.search(r"http://testserver(/accounts/password/reset/\S+)", mail.outbox[0].body)
    assert link is not None
    page = client.get(link.group(1), follow=True)
    new = "another long passphrase 77"
    response = client.post(page.redirect_chain[-1][0], {"new_password1": new, "new_password2": new})
    assert response["Location"] == "/accounts/password/reset/complete/"
    user.refresh_from_db()
    assert user.check_password(new)
    # Unknown addresses get the same answer and no mail.
    response = client.post("/accounts/password/reset/", {"email": "nobody@example.com"})
    assert response["Location"] == "/accounts/password/reset/sent/"
    assert len(mail.outbox) == 1
