"""The playground and the quickstart in a real browser, against a live gateway.

The page mints its playground key, streams from ``/v1/chat/completions``
over fetch, and shows provider, attempts, tokens, timings and the billed
cost (read back from ``/api/v1/generation`` once the usage record is
written; the test drains the usage stream as the consumer would). The
compare view streams two models at once. The quickstart's Copy button puts
the snippet on the clipboard exactly as shown.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from playwright.sync_api import expect

from accounts.services import team_create, user_signup
from keys.models import ApiKey
from providers.emulators.testing import RunningEmulator, start_emulator
from routing.models import UsageRecord
from routing.usage import records as usage
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

CATALOG = """
providers:
  - name: local
    kind: openai
    base_url: {base_url}/v1
    api_key_env: TEST_UPSTREAM_KEY
models:
  - id: local/mock
    provider: local
    upstream: gpt-mock
    context_length: 32768
    pricing: {{prompt: 50, completion: 150}}
  - id: local/other
    name: Other mock
    provider: local
    upstream: gpt-other
    context_length: 8192
    pricing: {{prompt: 5, completion: 15}}
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[RunningEmulator]:
    emulator = start_emulator("openai", stream_tokens=12, chunk_interval_ms=20)
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def site(
    transactional_db: None,
    live_server: Any,
    upstream: RunningEmulator,
    load_catalog: Callable[[str], None],
) -> dict[str, Any]:
    load_catalog(CATALOG.format(base_url=upstream.base_url))
    user = user_signup(username="olga", email="olga@example.com", password="x" * 20)
    team_create(name="Rocket Lab", owner=user)
    client = Client()
    client.force_login(user)
    return {"url": str(live_server.url), "session": client.cookies["sessionid"].value}


@pytest.fixture
def page(chromium: Any, site: dict[str, Any]) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1366, "height": 900}, locale="en-US")
    context.set_default_timeout(15_000)
    context.add_cookies([{"name": "sessionid", "value": site["session"], "url": site["url"]}])
    try:
        yield context.new_page()
    finally:
        context.close()


def drain() -> None:
    sink = usage.stream_sink()
    if sink is not None:
        while sink.consume_once(block_ms=10):
            pass
    usage.flush_all()


def meta(answer: Any, name: str) -> Any:
    return answer.locator(f'[data-meta="{name}"] dd')


def wait_for_cost(answer: Any) -> str:
    def billed() -> bool:
        drain()
        return meta(answer, "cost").inner_text().endswith("RUB")

    wait_until(billed, timeout=15, what="the billed cost under the answer")
    return str(meta(answer, "cost").inner_text())


def test_playground_streams_and_shows_what_the_gateway_did(
    site: dict[str, Any], page: Any, screenshot_dir: Path
) -> None:
    page.goto(site["url"] + "/playground/")
    expect(page.get_by_role("heading", name="Playground")).to_be_visible()
    expect(page.locator("#pg-model-a-info li:not([hidden])")).to_contain_text(
        "RUB per 1M tokens: 50,000.00 prompt, 150,000.00 completion · context 32,768 tokens"
    )
    page.get_by_label("System prompt").fill("Answer briefly.")
    page.get_by_label("Temperature").fill("0.3")
    page.get_by_label("Max tokens", exact=True).fill("64")
    page.get_by_label("Message").fill("Tell me about the weather in Moscow")
    page.get_by_role("button", name="Send").click()

    answer = page.get_by_test_id("transcript-a").locator(".pg-assistant").last
    expect(answer).to_have_attribute("data-state", "done")
    assert answer.locator(".pg-text").inner_text().strip()
    expect(meta(answer, "provider")).to_have_text("local")
    expect(meta(answer, "model")).to_have_text("local/mock")
    expect(meta(answer, "attempts")).to_have_text("local:200")
    expect(meta(answer, "tokens")).to_have_text(re.compile(r"^\d+ prompt \+ \d+ completion$"))
    expect(meta(answer, "ttft")).to_have_text(re.compile(r"^[\d,]+ ms$"))
    expect(meta(answer, "latency")).to_have_text(re.compile(r"^[\d,]+ ms$"))
    cost = wait_for_cost(answer)
    assert re.fullmatch(r"\d+\.\d\d RUB", cost), cost
    expect(page.get_by_test_id("playground-key")).to_contain_text("Playground key xr_live_")

    # The request is the team's, made with the playground key, billed as shown.
    generation = meta(answer, "generation").inner_text()
    record = UsageRecord.objects.select_related("key").get(generation_id=generation)
    assert record.key is not None and record.key.playground is True
    assert record.stream is True
    assert f"{record.cost_rub:.2f} RUB" == cost
    page.screenshot(path=str(screenshot_dir / "playground-answer.png"), full_page=True)

    # The conversation goes on: the second turn carries the first.
    page.get_by_label("Message").fill("And tomorrow?")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_test_id("transcript-a").locator(".pg-assistant")).to_have_count(2)
    expect(page.get_by_test_id("transcript-a").locator(".pg-assistant").last).to_have_attribute(
        "data-state", "done"
    )
    assert ApiKey.objects.filter(playground=True).count() == 1


def test_compare_streams_two_models_at_once(
    site: dict[str, Any], page: Any, screenshot_dir: Path
) -> None:
    page.goto(site["url"] + "/playground/")
    page.get_by_label("Compare two models side by side").check()
    page.get_by_label("Compare with").select_option("local/other")
    expect(page.locator("#pg-model-b-info li:not([hidden])")).to_contain_text("Other mock")
    page.get_by_label("Message").fill("Hello")
    page.get_by_role("button", name="Send").click()
    answers = {}
    for pane, model in (("a", "local/mock"), ("b", "local/other")):
        answer = page.get_by_test_id(f"transcript-{pane}").locator(".pg-assistant").last
        expect(answer).to_have_attribute("data-state", "done")
        expect(meta(answer, "model")).to_have_text(model)
        answers[pane] = answer
    for answer in answers.values():
        wait_for_cost(answer)
    page.screenshot(path=str(screenshot_dir / "playground-compare.png"), full_page=True)
    served = set(UsageRecord.objects.values_list("served_model", flat=True))
    assert served == {"local/mock", "local/other"}
    # One key for both panes.
    assert ApiKey.objects.filter(playground=True).count() == 1


def test_bad_parameters_are_caught_before_sending_and_by_the_gateway(
    site: dict[str, Any], page: Any
) -> None:
    page.goto(site["url"] + "/playground/")
    page.get_by_label("Message").fill("Hello")
    page.get_by_label("Temperature").fill("7")
    page.locator("summary").click()
    page.get_by_label("Tools (JSON)").fill('[{"type": "function"}]')
    page.get_by_label("JSON schema of the answer (response_format)").fill("{not json")
    page.get_by_role("button", name="Send").click()
    errors = page.locator("#pg-errors")
    expect(errors).to_contain_text("Temperature must be a number from 0 to 2.")
    expect(errors).to_contain_text('tools[0] must be {"type": "function"')
    expect(errors).to_contain_text("The JSON schema is not valid JSON")
    expect(page.get_by_label("Temperature")).to_have_attribute("aria-invalid", "true")
    # Nothing was sent, so no key was minted either.
    assert ApiKey.objects.filter(playground=True).count() == 0

    # What only the gateway knows (parameters must be an object) comes back
    # as its OpenAI error, under the answer.
    page.get_by_label("Temperature").fill("")
    page.get_by_label("JSON schema of the answer (response_format)").fill("")
    page.get_by_label("Tools (JSON)").fill(
        '[{"type": "function", "function": {"name": "f", "parameters": []}}]'
    )
    page.get_by_role("button", name="Send").click()
    expect(errors).to_be_empty()
    answer = page.get_by_test_id("transcript-a").locator(".pg-assistant").last
    expect(answer).to_have_attribute("data-state", "error")
    expect(answer).to_contain_text("(tools[0].function.parameters)")


def test_structured_output_and_tools_reach_the_model(site: dict[str, Any], page: Any) -> None:
    page.goto(site["url"] + "/playground/")
    page.locator("summary").click()
    page.get_by_label("Tools (JSON)").fill(
        '[{"type": "function", "function": {"name": "get_weather",'
        ' "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]'
    )
    page.get_by_label("Message").fill("What is the weather in Paris?")
    page.get_by_role("button", name="Send").click()
    answer = page.get_by_test_id("transcript-a").locator(".pg-assistant").last
    expect(answer).to_have_attribute("data-state", "done")
    expect(answer.locator(".pg-text")).to_contain_text("Tool call: get_weather(")

    page.get_by_role("button", name="Clear conversation").click()
    page.get_by_label("Tools (JSON)").fill("")
    page.get_by_label("JSON schema of the answer (response_format)").fill(
        '{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}'
    )
    page.get_by_label("Message").fill("Pick a city")
    with page.expect_request("**/v1/chat/completions") as sent:
        page.get_by_role("button", name="Send").click()
    body = sent.value.post_data_json
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert "tools" not in body
    # The gateway accepted it (the emulator answers in plain text regardless).
    answer = page.get_by_test_id("transcript-a").locator(".pg-assistant").last
    expect(answer).to_have_attribute("data-state", "done")


def test_quickstart_copy_puts_the_snippet_on_the_clipboard(
    site: dict[str, Any], page: Any, screenshot_dir: Path
) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(site["url"] + "/")
    quickstart = page.locator(".quickstart")
    expect(quickstart.get_by_role("tab", name="curl")).to_have_attribute("aria-selected", "true")
    expect(page.get_by_test_id("snippet-python")).to_be_hidden()
    quickstart.get_by_role("tab", name="Python (openai)").click()
    python = page.get_by_test_id("snippet-python")
    expect(python).to_be_visible()
    expect(page.get_by_test_id("snippet-curl")).to_be_hidden()
    python.get_by_role("button", name="Copy code").click()
    expect(python.get_by_role("status")).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == python.locator("code").inner_text()
    assert f'base_url="{site["url"]}/v1"' in copied
    assert "YOUR_KEY_FROM_THE_API_KEYS_PAGE" in copied
    page.screenshot(path=str(screenshot_dir / "quickstart-home.png"), full_page=True)
