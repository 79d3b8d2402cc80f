"""The official OpenAI JS SDK's ``responses.create`` against the zero-config stack.

The SDK is installed from npm into ``tests/js/`` (``package-lock.json`` pins
it) on first use; ``node_modules`` is not committed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import LiveGateway

JS_DIR = Path(__file__).resolve().parents[2] / "js"


@pytest.fixture(scope="module")
def js_sdk() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are required for the JS SDK test (apt-get install nodejs npm)")
    if not (JS_DIR / "node_modules" / "openai").is_dir():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True, timeout=300
        )
    return JS_DIR


def test_responses_create_plain_and_streamed(js_sdk: Path, demo: LiveGateway) -> None:
    env = {
        **os.environ,
        "XROUTER_BASE_URL": demo.url + "/v1",
        "XROUTER_API_KEY": demo.key,
        "XROUTER_MODEL": "yandex/yandexgpt-lite",
    }
    done = subprocess.run(
        ["node", "responses.mjs"],
        cwd=js_sdk,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["plain"]["id"].startswith("resp_")
    assert "Привет из JS" in seen["plain"]["text"]
    assert seen["plain"]["usage"]["output_tokens"] > 0
    kinds = seen["stream"]["kinds"]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds
    assert "Поток из JS" in seen["stream"]["text"]
    assert seen["stream"]["completedText"] == seen["stream"]["text"]
    assert seen["stream"]["status"] == "completed"
    assert seen["missing"] == {"status": 404, "name": "NotFoundError"}
