"""Issue 20's "what a person ran into" wording slips stay fixed, in both languages.

Each test is one slip from the issue: Russian plurals on count cards, units
and separators on the usage page, the gateway's English, the advice after
sign-up shown once, and the site icon.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import orjson
import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from accounts.models import Team
from keys.services import api_key_revoke
from routing.usage import rollups
from routing.usage.records import UsageEvent, write_events
from tests.accounts.cast import PASSWORD, Cast, build_cast
from tests.conftest import openai_catalog

NBSP = "\xa0"


@pytest.fixture
def cast(team: Team, other_team: Team, load_catalog: Callable[[str], None]) -> Cast:
    load_catalog(openai_catalog("http://127.0.0.1:9"))
    return build_cast(team=team, other_team=other_team)


def stats(html: str) -> dict[str, str]:
    """Return the count cards of a page: {label: value}."""
    cards = re.findall(r"<div><dt>(.*?)</dt><dd>(.*?)</dd></div>", html)
    return {label: re.sub(r"<[^>]+>", "", value) for label, value in cards}


def test_home_count_cards_agree_with_their_number_in_russian(cast: Cast) -> None:
    """0 revoked keys reads "отозванных ключей", 1 reads "отозванный ключ"."""
    alice = cast.client_for(cast.alice)
    cards = stats(alice.get("/", HTTP_ACCEPT_LANGUAGE="ru").content.decode())
    assert cards["отозванных ключей"] == "0"
    assert cards["активный ключ"] == "1"
    api_key_revoke(api_key=cast.alice_key.api_key)
    cards = stats(alice.get("/", HTTP_ACCEPT_LANGUAGE="ru").content.decode())
    assert cards["отозванный ключ"] == "1"
    assert cards["активных ключей"] == "0"


def test_usage_page_units_and_separators_follow_the_language(cast: Cast) -> None:
    """Russian: "мс", decimal comma, no English "ms"; English: "ms", decimal point."""
    write_events(
        [
            UsageEvent(
                request_id=f"req-wording-{i}",
                created=time.time(),
                team_id=cast.team.pk,
                key_id=None,
                endpoint="chat",
                requested_model="local/mock",
                served_model="local/mock",
                provider="local",
                cost_rub="1.5",
                latency_ms=1500.0,
            )
            for i in range(3)
        ]
    )
    rollups.usage_rollup_recent()
    alice = cast.client_for(cast.alice)
    ru = alice.get("/usage/", HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    cards = stats(ru)
    assert cards["Стоимость, ₽"] == "4,50"
    assert cards["Задержка p50 / p95"].endswith(" мс")
    assert not re.search(r"\d ms\b", ru)
    assert not re.search(r"\d\.\d", re.sub(r"<svg.*?</svg>|\d{4}-\d\d-\d\d", "", ru, flags=re.S))
    en = alice.get("/usage/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert stats(en)["Cost, RUB"] == "4.50"
    assert stats(en)["Latency p50 / p95"].endswith(" ms")


def _chat(key: str, **body: object) -> dict[str, str]:
    response = Client().post(
        "/v1/chat/completions",
        data=orjson.dumps({"messages": [{"role": "user", "content": "hi"}], **body}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    assert response.status_code == 400
    return response.json()["error"]  # type: ignore[no-any-return]


def test_gateway_english_uses_the_right_article_and_bounds(cast: Cast) -> None:
    """ "is an embedding model", and "must be exactly 1" (never "between 1 and 1")."""
    key = cast.alice_key.plaintext
    assert _chat(key, model="local/embed")["message"] == (
        "The model 'local/embed' is an embedding model and cannot serve this endpoint."
    )
    assert _chat(key, model="local/mock", n=2)["message"] == (
        "Invalid value for 'n': must be exactly 1, got 2."
    )


def test_sign_up_says_what_to_do_once(db: None) -> None:
    """After sign-up the teams page gives its advice once, with one welcome."""
    client = Client()
    response = client.post(
        "/accounts/signup/",
        {
            "username": "nina",
            "email": "nina@example.com",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
        follow=True,
    )
    html = response.content.decode()
    assert response.redirect_chain[-1][0] == "/accounts/teams/"
    assert html.count("Welcome, nina!") == 1
    assert html.count("Create one, or open an invitation link") == 1
    assert html.count('<li class="message') == 1
    # Home without a team goes to the same page with no second message.
    home = client.get("/", follow=True).content.decode()
    assert home.count('<li class="message') == 0


def test_every_page_names_an_icon_that_exists(cast: Cast) -> None:
    """Pages link the SVG icon; /favicon.ico (admin, API docs) redirects to it."""
    html = cast.client_for(cast.alice).get("/keys/").content.decode()
    href = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', html)
    assert href is not None
    response = Client().get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"] == href.group(1)
    icon = finders.find("xrouter/favicon.svg")
    assert icon is not None
    with open(icon, encoding="utf-8") as svg:
        assert svg.read().startswith("<svg")
