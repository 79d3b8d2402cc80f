"""The ``/auth`` key exchange across real workers without Redis (issue 15, Low).

In zero-config (no ``REDIS_URL``) each gunicorn worker has its own memory
cache, and the exchange kept its codes there: a code issued by one worker
was "Invalid or expired" on the other (4 of 41 fresh codes refused). Codes
now live in the database; every fresh code redeems, on whichever worker.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests
from django.conf import settings
from django.test import Client

from accounts.models import KeyExchangeCode
from keys.models import ApiKey
from tests.accounts.cast import Cast
from tests.accounts.oauth.conftest import CHALLENGE, VERIFIER
from tests.gateway_process import running_gateway

pytestmark = pytest.mark.slow

PARAMS = {
    "callback_url": "http://127.0.0.1:9/cb",
    "code_challenge": CHALLENGE,
    "code_challenge_method": "S256",
}
# Below the per-address redemption throttle (20/m), so every refusal would
# be the bug, not the throttle.
CODES = 18
NO_REDIS = {
    "REDIS_URL": "",
    "XROUTER_LIMITER_REDIS_URL": "",
    "XROUTER_USAGE_REDIS_URL": "",
    "SESSION_COOKIE_SECURE": "false",
    "CSRF_COOKIE_SECURE": "false",
}


def _browser(cast: Cast, base: str) -> requests.Session:
    """A requests session carrying carol's (admin) dashboard session cookie."""
    client: Client = cast.client_for(cast.carol, cast.team)
    browser = requests.Session()
    browser.cookies.set(settings.SESSION_COOKIE_NAME, client.cookies["sessionid"].value)
    return browser


def _issue_code(browser: requests.Session, base: str) -> str:
    page = browser.get(base + "/auth", params=PARAMS, timeout=10)
    assert page.status_code == 200, page.text[:500]
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token is not None
    approved = browser.post(
        base + "/auth",
        data={**PARAMS, "allow": "1", "csrfmiddlewaretoken": token.group(1)},
        headers={"Referer": base + "/auth"},
        allow_redirects=False,
        timeout=10,
    )
    assert approved.status_code == 302, approved.text[:500]
    match = re.search(r"[?&]code=([^&]+)", approved.headers["Location"])
    assert match is not None
    return match.group(1)


def _redeem(base: str, code: str) -> Any:
    # A fresh connection each time, so redemptions spread over the workers.
    with requests.Session() as app:
        return app.post(
            base + "/api/v1/auth/keys",
            json={"code": code, "code_verifier": VERIFIER, "code_challenge_method": "S256"},
            headers={"Connection": "close"},
            timeout=10,
        )


def test_every_fresh_code_redeems_on_any_worker(transactional_db: None, cast: Cast) -> None:
    with running_gateway(workers=2, env=NO_REDIS) as gateway:
        browser = _browser(cast, gateway.url)
        codes = [_issue_code(browser, gateway.url) for _ in range(CODES)]
        answers = [_redeem(gateway.url, code) for code in codes]
        refused = [(a.status_code, a.text[:200]) for a in answers if a.status_code != 200]
        assert refused == []
        keys = {a.json()["key"] for a in answers}
        assert len(keys) == CODES
        # Each code worked once: a replay is refused.
        replay = _redeem(gateway.url, codes[0])
        assert replay.status_code == 403
        assert replay.json()["error"]["code"] == "invalid_code"
    assert ApiKey.objects.filter(created_by=cast.carol, name__startswith="App:").count() == CODES
    assert not KeyExchangeCode.objects.exists()
