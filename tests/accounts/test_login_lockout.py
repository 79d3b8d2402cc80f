"""One lockout policy for /admin/login/ and the dashboard login (issue 15, Medium 7).

django-axes locks the pair (username, client address): an attacker's bad
passwords lock the attacker out of that account, never the owner coming
from elsewhere. The admin login had no throttle at all.
"""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

from accounts.models import User
from tests.accounts.cast import PASSWORD, make_user

pytestmark = pytest.mark.django_db

ATTACKER = "198.51.100.66"
OWNER = "203.0.113.10"
PROXY = "10.0.0.5"


def dashboard_login(client: Client, username: str, password: str, **extra: str) -> int:
    response = client.post(
        "/accounts/login/", {"username": username, "password": password}, **extra
    )
    return int(response.status_code)


def admin_login(client: Client, username: str, password: str, **extra: str) -> int:
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": username, "password": password, "next": "/admin/"},
        **extra,
    )
    return int(response.status_code)


def make_staff(username: str) -> User:
    user = make_user(username)
    user.is_staff = user.is_superuser = True
    user.save()
    return user


@pytest.mark.parametrize("login", [dashboard_login, admin_login])
def test_attacker_cannot_lock_the_owner_out(login: object) -> None:
    make_staff("dana")
    attacker = Client(REMOTE_ADDR=ATTACKER)
    codes = [login(attacker, "dana", f"guess-{i}") for i in range(6)]  # type: ignore[operator]
    assert codes[:4] == [200] * 4 and codes[4:] == [429, 429]
    # The attacker now fails even with the right password...
    assert login(attacker, "dana", PASSWORD) == 429  # type: ignore[operator]
    # ...while dana, from her own address, logs in at once.
    assert login(Client(REMOTE_ADDR=OWNER), "dana", PASSWORD) == 302  # type: ignore[operator]


def test_admin_and_dashboard_share_the_count() -> None:
    """Three failures on one form and two on the other lock both."""
    make_staff("dana")
    attacker = Client(REMOTE_ADDR=ATTACKER)
    for i in range(3):
        assert admin_login(attacker, "dana", f"x{i}") == 200
    assert dashboard_login(attacker, "dana", "x3") == 200
    assert dashboard_login(attacker, "dana", "x4") == 429
    assert admin_login(attacker, "dana", PASSWORD) == 429


def test_admin_login_locked_page_says_why_without_an_oracle() -> None:
    make_staff("dana")
    attacker = Client(REMOTE_ADDR=ATTACKER)
    for i in range(5):
        admin_login(attacker, "dana", f"x{i}")
    page = attacker.post("/admin/login/", {"username": "dana", "password": PASSWORD})
    for i in range(5):
        admin_login(attacker, "nobody", f"x{i}")
    unknown = attacker.post("/admin/login/", {"username": "nobody", "password": "x"})
    assert page.status_code == unknown.status_code == 429
    assert page.context["message"] == unknown.context["message"]
    assert "logging in from elsewhere is not affected" in page.context["message"]
    assert b"dana" not in page.content


def test_admin_login_caps_spraying_from_one_address() -> None:
    sprayer = Client(REMOTE_ADDR=ATTACKER)
    codes = [admin_login(sprayer, f"user{i}", "x") for i in range(21)]
    assert codes[:20] == [200] * 20 and codes[20] == 429
    assert dashboard_login(Client(REMOTE_ADDR=OWNER), "user0", "x") == 200


@override_settings(XROUTER_TRUSTED_PROXIES=[f"{PROXY}/32"])
def test_behind_a_trusted_proxy_the_lock_is_per_client_not_per_proxy() -> None:
    """Without the client-IP function every user behind the proxy would share a lock."""
    make_staff("dana")
    via_proxy = Client(REMOTE_ADDR=PROXY)
    for i in range(5):
        dashboard_login(via_proxy, "dana", f"x{i}", HTTP_X_FORWARDED_FOR=ATTACKER)
    assert dashboard_login(via_proxy, "dana", PASSWORD, HTTP_X_FORWARDED_FOR=ATTACKER) == 429
    # A spoofed left-most hop does not move the attacker to a fresh bucket.
    spoofed = f"{OWNER}, {ATTACKER}"
    assert dashboard_login(via_proxy, "dana", PASSWORD, HTTP_X_FORWARDED_FOR=spoofed) == 429
    assert dashboard_login(via_proxy, "dana", PASSWORD, HTTP_X_FORWARDED_FOR=OWNER) == 302
