"""scripts/lock.py check: the locks must follow their requirements files."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_lock_module(root: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("lock_under_test", ROOT / "scripts" / "lock.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    module.ROOT = root
    return module


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in (
        "requirements.txt",
        "requirements-dev.txt",
        "requirements.lock",
        "requirements-dev.lock",
        "deploy/requirements-deploy.txt",
        "deploy/requirements-deploy.lock",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def problems(root: Path) -> list[str]:
    lock = load_lock_module(root)
    return [problem for entry in lock.LOCKS for problem in lock.check_lock(entry)]


def test_committed_locks_match_their_inputs(tree: Path) -> None:
    assert problems(tree) == []


def test_an_edited_requirements_file_fails_with_the_fix_named(tree: Path) -> None:
    with (tree / "requirements.txt").open("a") as handle:
        handle.write("# a new comment still changes what the lock was made from\n")
    found = problems(tree)
    assert any("requirements.lock was compiled from other contents" in p for p in found)
    assert all("make lock" in p for p in found)


def test_a_new_dependency_without_make_lock_is_named(tree: Path) -> None:
    with (tree / "requirements-dev.txt").open("a") as handle:
        handle.write("some-new-tool>=1,<2\n")
    found = problems(tree)
    assert any("does not pin some-new-tool" in p for p in found)


def test_a_pin_outside_the_range_is_named(tree: Path) -> None:
    lock = tree / "requirements.lock"
    text = lock.read_text()
    pinned = next(line for line in text.splitlines() if line.startswith("django=="))
    lock.write_text(text.replace(pinned, "django==4.2.0 \\"))
    found = problems(tree)
    assert any("pins Django==4.2.0, outside" in p for p in found)
