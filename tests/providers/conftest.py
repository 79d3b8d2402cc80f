"""Fixtures that run provider emulators as real subprocesses.

These tests must not need Django (run with ``-p no:django``), so nothing here
touches settings or the database.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Test folders have no __init__.py, so pytest puts this folder (not the repo
# root) on sys.path; make ``providers`` importable however pytest was started.
_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from providers.emulators.testing import (  # noqa: E402
    EmulatorControl,
    RunningEmulator,
    start_emulator,
)

#: Fast streams keep the suite quick: 5 chunks, 10 ms apart.
OPENAI_EMULATOR_KNOBS: dict[str, object] = {"stream_tokens": 5, "chunk_interval_ms": 10}


@pytest.fixture(scope="module")
def openai_emulator_process() -> Iterator[RunningEmulator]:
    """One OpenAI emulator process per test module, killed at teardown."""
    emulator = start_emulator("openai", knobs=OPENAI_EMULATOR_KNOBS)
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def openai_emulator(openai_emulator_process: RunningEmulator) -> str:
    """Base URL (``http://127.0.0.1:PORT``) of a freshly reset OpenAI emulator.

    The process is shared by the module; resetting before each test restores
    the start-up knobs and zeroes the stats, so tests stay independent.
    """
    openai_emulator_process.control.reset()
    return openai_emulator_process.base_url


@pytest.fixture
def openai_emulator_control(openai_emulator: str) -> EmulatorControl:
    """Control client (stats/config/reset) for :func:`openai_emulator`."""
    return EmulatorControl(openai_emulator)
