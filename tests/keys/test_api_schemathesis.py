"""schemathesis against ``/api/schema/`` with every check, stateful included.

The CLI runs in a subprocess against pytest-django's ``live_server`` (real
PostgreSQL and Redis), generating valid and invalid requests for every
operation the schema lists, DELETE included, and following the schema's
links (create -> retrieve -> update -> delete). It authenticates as a
management key, which the API never lets revoke or disable itself (409),
so following links cannot cut off the run; the team has keys it may
destroy. Any 5xx and any schema violation fails the test (issue 15,
"The API contract"); ``--max-time`` bounds it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from accounts.models import Membership
from accounts.services import team_add_member, team_get_or_create, user_signup
from keys.models import ApiKey
from keys.services import api_key_create
from tests.accounts.cast import management_key
from tests.conftest import openai_catalog

pytestmark = pytest.mark.slow

REPORTS = Path(__file__).resolve().parents[2] / "artifacts" / "schemathesis"


@pytest.mark.timeout(300)
def test_management_api_has_no_server_errors_or_violations(
    transactional_db: None, live_server: Any, load_catalog: Callable[[str], None]
) -> None:
    """Every check passes on every operation within the time budget."""
    load_catalog(openai_catalog("http://127.0.0.1:9"))
    team = team_get_or_create(slug="fuzz", name="Fuzz")[0]
    owner = user_signup(username="fuzzer", email="fuzz@example.com", password="x" * 24)
    team_add_member(team=team, user=owner, role=Membership.Role.OWNER)
    for n in range(5):  # keys the run may revoke
        api_key_create(team=team, name=f"expendable {n}", created_by=owner)
    # The run's own key: the API refuses to let a key revoke or disable
    # itself (409), so following links to it cannot end the run.
    key = management_key(team)
    REPORTS.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "--config-file",
            str(Path(__file__).with_name("schemathesis.toml")),
            "run",
            f"{live_server.url}/api/schema/",
            "--url",
            live_server.url,
            "-H",
            f"Authorization: Bearer {key.plaintext}",
            "--checks",
            "all",
            "--max-examples",
            os.environ.get("XROUTER_SCHEMATHESIS_EXAMPLES", "25"),
            "--max-time",
            os.environ.get("XROUTER_SCHEMATHESIS_SECONDS", "100"),
            "--seed",
            "20261127",
            "--request-timeout",
            "10",
            "--report",
            "junit",
            "--report-junit-path",
            str(REPORTS / "junit.xml"),
            "--no-color",
            # The management API only: the same schema documents /v1/, the
            # key exchange, /key and /credits; an inference key's run below
            # covers /key, /credits and GET /v1/models, the POST surfaces are
            # tested with their SDKs (tests/routing/gateway/).
            "--include-path-regex",
            "^/api/v1/(keys|teams|models|generation)",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    output = result.stdout + result.stderr
    (REPORTS / "output.txt").write_text(output, encoding="utf-8")
    assert result.returncode == 0, output[-8000:]
    # Every operation ran, DELETE included, and the stateful phase too,
    # each with no failure and no error.
    # Our own report file, written by the run above: not untrusted input.
    suites = ElementTree.parse(REPORTS / "junit.xml").getroot()  # noqa: S314
    assert (suites.get("failures"), suites.get("errors")) == ("0", "0"), output[-3000:]
    ran = {case.get("name") for case in suites.iter("testcase") if not list(case)}
    assert ran == {
        "GET /api/v1/keys",
        "POST /api/v1/keys",
        "GET /api/v1/keys/{public_id}",
        "PATCH /api/v1/keys/{public_id}",
        "DELETE /api/v1/keys/{public_id}",
        "GET /api/v1/teams/current",
        "PATCH /api/v1/teams/current",
        "GET /api/v1/models",
        "GET /api/v1/generation",
        "Stateful tests",
    }, output[-3000:]
    # Keys were created and revoked; the run's own key survived.
    assert ApiKey.objects.filter(team=team, revoked_at__isnull=False).exists(), output[-3000:]
    assert ApiKey.objects.filter(team=team).count() > 7, output[-3000:]
    assert ApiKey.objects.get(pk=key.api_key.pk).is_usable(), output[-3000:]


@pytest.mark.timeout(300)
def test_key_info_and_model_list_have_no_server_errors_or_violations(
    transactional_db: None, live_server: Any, load_catalog: Callable[[str], None]
) -> None:
    """The inference key's own operations: /api/v1/key, /credits, GET /v1/models."""
    load_catalog(openai_catalog("http://127.0.0.1:9"))
    team = team_get_or_create(slug="fuzz", name="Fuzz")[0]
    key = api_key_create(team=team, name="inference", rpm_limit=100_000)
    REPORTS.mkdir(parents=True, exist_ok=True)
    report = REPORTS / "junit-key-info.xml"
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "--config-file",
            str(Path(__file__).with_name("schemathesis.toml")),
            "run",
            f"{live_server.url}/api/schema/",
            "--url",
            live_server.url,
            "-H",
            f"Authorization: Bearer {key.plaintext}",
            "--checks",
            "all",
            "--max-examples",
            os.environ.get("XROUTER_SCHEMATHESIS_EXAMPLES", "25"),
            "--max-time",
            "60",
            "--seed",
            "20261201",
            "--request-timeout",
            "10",
            "--report",
            "junit",
            "--report-junit-path",
            str(report),
            "--no-color",
            "--include-path-regex",
            "^/(api/v1/(key|credits)|v1/models(/\\{[^}]+\\})?)$",
        ],
        capture_output=True,
        text=True,
        timeout=200,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    output = result.stdout + result.stderr
    (REPORTS / "output-key-info.txt").write_text(output, encoding="utf-8")
    assert result.returncode == 0, output[-8000:]
    # Our own report file, written by the run above: not untrusted input.
    suites = ElementTree.parse(report).getroot()  # noqa: S314
    assert (suites.get("failures"), suites.get("errors")) == ("0", "0"), output[-3000:]
    ran = {case.get("name") for case in suites.iter("testcase") if not list(case)}
    assert {"GET /api/v1/key", "GET /api/v1/credits", "GET /v1/models"} <= ran, output[-3000:]
