"""Quickstart snippets on the home page and after a key is created.

The Python ``openai`` and ``curl`` snippets are taken out of the rendered
page and run as they are against a live gateway: a snippet that a person
would copy and that fails is a failed test.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable

import pytest
from django.test import Client, override_settings

from accounts.models import Team
from keys import quickstart
from keys.models import ApiKey
from tests.accounts.cast import Cast, build_cast
from tests.conftest import LiveGateway, openai_catalog


def snippet(page: str, slug: str) -> str:
    """Return the text of snippet ``slug`` as a browser would copy it."""
    found = re.search(rf'<code id="code-{slug}" class="language-\w+">(.*?)</code>', page, re.S)
    assert found is not None, f"no {slug} snippet on the page"
    return html.unescape(found.group(1))


@pytest.fixture
def cast(team: Team, other_team: Team, load_catalog: Callable[[str], None]) -> Cast:
    load_catalog(openai_catalog("http://127.0.0.1:9"))
    return build_cast(team=team, other_team=other_team)


def test_home_snippets_hold_a_placeholder_that_says_where_keys_are(cast: Cast) -> None:
    """Home shows every client with this site's URL and a placeholder, never a key."""
    page = cast.client_for(cast.alice).get("/").content.decode()
    for slug in ("curl", "python", "javascript", "langchain", "anthropic"):
        code = snippet(page, slug)
        assert "YOUR_KEY_FROM_THE_API_KEYS_PAGE" in code, slug
        assert "http://testserver" in code and "local/mock" in code, slug
    assert 'base_url="http://testserver/v1"' in snippet(page, "python")
    # The Anthropic SDK adds /v1/messages itself.
    assert 'base_url="http://testserver"' in snippet(page, "anthropic")
    assert cast.alice_key.plaintext not in page
    assert 'href="/keys/new/">create a new one.</a>' in page


def test_members_are_told_to_ask_for_a_key(cast: Cast) -> None:
    """A member cannot create keys, so the home page says whom to ask."""
    page = cast.client_for(cast.bob).get("/").content.decode()
    assert "ask an owner or admin of the team for one." in page
    assert 'href="/keys/new/"' not in page.split('id="quickstart-h"')[1]


def test_home_placeholder_is_translated(cast: Cast) -> None:
    client = cast.client_for(cast.alice)
    client.cookies["django_language"] = "ru"
    page = client.get("/").content.decode()
    assert "ВАШ_КЛЮЧ_СО_СТРАНИЦЫ_API_КЛЮЧЕЙ" in snippet(page, "python")
    assert "Быстрый старт" in page


@override_settings(XROUTER_PUBLIC_URL="https://llm.example.com")
def test_public_url_setting_wins_over_the_request_host(cast: Cast) -> None:
    page = cast.client_for(cast.alice).get("/").content.decode()
    assert 'base_url="https://llm.example.com/v1"' in snippet(page, "python")
    assert "curl https://llm.example.com/v1/chat/completions" in snippet(page, "curl")


def test_new_key_snippets_hold_the_key_and_an_allowed_model(cast: Cast) -> None:
    """After creation the snippets carry the plaintext and a model the key may call."""
    response = cast.client_for(cast.alice).post(
        "/keys/new/", {"name": "embedder", "allowed_models": ["local/embed", "local/mock"]}
    )
    plaintext = response.context["plaintext"]
    page = response.content.decode()
    code = snippet(page, "python")
    assert f'api_key="{plaintext}"' in code and 'model="local/mock"' in code
    assert f"Bearer {plaintext}" in snippet(page, "curl")
    assert response["Cache-Control"] == "no-store"


def test_management_key_gets_no_gateway_snippets(cast: Cast) -> None:
    """A management key cannot call /v1/, so no snippet pretends it can."""
    response = cast.client_for(cast.alice).post("/keys/new/", {"name": "ci", "management": "on"})
    assert ApiKey.objects.get(name="ci").is_management
    assert 'id="code-python"' not in response.content.decode()


def test_example_model_prefers_a_served_current_chat_model() -> None:
    """Aliases, deprecated branches and embedding models are picked last or never."""

    class Route:
        def __init__(self, model_id: str, **kw: object) -> None:
            self.model_id = model_id
            self.type = str(kw.get("type", "chat"))
            self.deprecated = bool(kw.get("deprecated", False))
            self.deployments: tuple[object, ...] = () if kw.get("alias") else ("d",)

    models = [
        Route("a/embed", type="embedding"),
        Route("a/old:deprecated", deprecated=True),
        Route("a/alias", alias=True),
        Route("b/chat"),
    ]
    assert quickstart.example_model(models) == "b/chat"
    assert quickstart.example_model(models, ["a/old"]) == "a/old:deprecated"
    assert quickstart.example_model(models, ["a/embed"]) == "xrouter/auto"


def _created_page(gateway: LiveGateway, team: Team, other_team: Team) -> tuple[str, str]:
    cast = build_cast(team=team, other_team=other_team)
    client = Client()
    client.force_login(cast.alice)
    # The page names the host it was asked under: the live server's.
    response = client.post(
        "/keys/new/", {"name": "quickstart"}, HTTP_HOST=gateway.url.split("://", 1)[1]
    )
    assert response.status_code == 200
    return response.content.decode(), response.context["plaintext"]


def test_python_openai_snippet_runs_against_the_gateway(
    gateway: LiveGateway, team: Team, other_team: Team
) -> None:
    """The Python snippet, copied as shown, prints the model's answer."""
    page, plaintext = _created_page(gateway, team, other_team)
    code = snippet(page, "python")
    assert f'OpenAI(base_url="{gateway.url}/v1", api_key="{plaintext}")' in code
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), "the snippet printed no answer"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_snippet_runs_against_the_gateway(
    gateway: LiveGateway, team: Team, other_team: Team
) -> None:
    """The curl snippet, pasted into a shell, gets a chat completion back."""
    page, _plaintext = _created_page(gateway, team, other_team)
    code = snippet(page, "curl")
    done = subprocess.run(
        ["bash", "-c", code + " --silent --show-error --fail-with-body"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    body = json.loads(done.stdout)
    assert body["object"] == "chat.completion" and body["model"] == "local/mock"
    assert body["choices"][0]["message"]["content"]


def test_anthropic_snippet_runs_against_the_gateway(
    gateway: LiveGateway, team: Team, other_team: Team
) -> None:
    """The Anthropic SDK snippet reaches /v1/messages with the key and prints the text."""
    page, plaintext = _created_page(gateway, team, other_team)
    code = snippet(page, "anthropic")
    assert f'anthropic.Anthropic(base_url="{gateway.url}", api_key="{plaintext}")' in code
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), "the snippet printed no answer"
