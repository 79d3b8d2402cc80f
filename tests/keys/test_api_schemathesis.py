"""Property-based run of schemathesis against ``/api/schema/``: no 5xx.

The CLI runs in a subprocess against pytest-django's ``live_server`` (real
PostgreSQL and Redis) with a management key, generating valid and invalid
requests for every operation the schema lists. Any 5xx fails the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from accounts.services import team_get_or_create
from keys.models import ApiKey
from tests.accounts.cast import management_key
from tests.conftest import openai_catalog

pytestmark = pytest.mark.slow

REPORTS = Path(__file__).resolve().parents[2] / "artifacts" / "schemathesis"


def test_management_api_has_no_server_errors(
    transactional_db: None, live_server: Any, load_catalog: Callable[[str], None]
) -> None:
    """Schemathesis finds no request that makes the management API answer 5xx."""
    load_catalog(openai_catalog("http://127.0.0.1:9"))
    team = team_get_or_create(slug="fuzz", name="Fuzz")[0]
    key = management_key(team)
    REPORTS.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{live_server.url}/api/schema/",
            "--url",
            live_server.url,
            "-H",
            f"Authorization: Bearer {key.plaintext}",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            os.environ.get("XROUTER_SCHEMATHESIS_EXAMPLES", "25"),
            "--seed",
            "20261127",
            "--request-timeout",
            "10",
            "--report",
            "junit",
            "--report-dir",
            str(REPORTS),
            "--no-color",
            # The stateful phase follows links from the key list and would
            # revoke the very management key the run authenticates with.
            "--phases",
            "examples,coverage,fuzzing",
            # The management API only: /v1/ (documented in the same schema)
            # takes a standard key, which this run does not send.
            "--include-path-regex",
            "^/api/",
        ],
        capture_output=True,
        text=True,
        timeout=150,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    # Every operation ran (keys x5, teams/current, models, generation, key,
    # credits, the key exchange) and requests got
    # past authentication: the fuzzer created keys. (Schemathesis reuses ids
    # it sees in responses, so it may revoke its own key late in the run;
    # requests after that get 401, which is still no 5xx.)
    assert "Tested: 11" in output, output[-3000:]
    assert ApiKey.objects.filter(team=team, kind=ApiKey.Kind.STANDARD).exists(), output[-3000:]
