"""The Russian catalogue is complete: nothing untranslated, nothing fuzzy.

Two checks: the committed ``django.po`` itself, and the catalogue that
``makemessages`` makes from today's source (run on a copy of the tree, so
the working tree is never touched): a string added to a template or to
Python code without a translation fails here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = Path("locale/ru/LC_MESSAGES/django.po")
SKIP = shutil.ignore_patterns(".*", "artifacts", "var", "node_modules", "__pycache__", "*.pyc")


def gaps(po: Path) -> dict[str, int]:
    """Return ``{"fuzzy": n, "untranslated": m}`` from ``msgfmt --statistics``."""
    result = subprocess.run(
        ["msgfmt", "--check-format", "--statistics", "-o", os.devnull, str(po)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "translated message" in result.stderr, result.stderr
    found = {"fuzzy": 0, "untranslated": 0}
    for count, kind in re.findall(r"(\d+) (fuzzy|untranslated)", result.stderr):
        found[kind] = int(count)
    return found


def test_committed_catalogue_has_no_untranslated_or_fuzzy_entries() -> None:
    assert gaps(ROOT / CATALOGUE) == {"fuzzy": 0, "untranslated": 0}


def test_makemessages_finds_no_new_string(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(ROOT, tree, ignore=SKIP, symlinks=True)
    env = {**os.environ, "DEBUG": "true", "PYTHONPATH": str(tree)}
    subprocess.run(
        [sys.executable, "manage.py", "makemessages", "-l", "ru", "--no-obsolete", "-v", "0"],
        cwd=tree,
        env=env,
        check=True,
        timeout=120,
    )
    assert gaps(tree / CATALOGUE) == {"fuzzy": 0, "untranslated": 0}
