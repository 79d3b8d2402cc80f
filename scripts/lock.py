"""Compile and check the hash-pinned dependency locks.

``requirements.txt`` and ``requirements-dev.txt`` say what XRouter needs
(version ranges, one comment per dependency). The locks say exactly what is
installed: every package, its version and the sha256 of every file pip may
download for it, so ``pip install --require-hashes`` refuses a tampered or
re-uploaded release.

    python scripts/lock.py compile   # `make lock`: re-resolve with uv, write the locks
    python scripts/lock.py check     # CI: fail when an input changed after the lock

Each lock records the sha256 of its inputs on an ``# inputs-sha256:`` line,
so ``check`` works offline and never re-resolves: it fails, naming the file
and the fix, when ``requirements*.txt`` was edited without ``make lock``, or
when a lock no longer satisfies a range it was compiled from.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

try:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version
except ImportError:  # a fresh venv before its first install: pip carries a copy
    from pip._vendor.packaging.requirements import (  # type: ignore[assignment]
        InvalidRequirement,
        Requirement,
    )
    from pip._vendor.packaging.utils import canonicalize_name  # type: ignore[assignment]
    from pip._vendor.packaging.version import Version  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parent.parent
PYTHON_VERSION = "3.11"
DIGEST_PREFIX = "# inputs-sha256: "


@dataclass(frozen=True)
class Lock:
    output: str
    inputs: tuple[str, ...]
    # A lock compiled with this one as constraints, so both agree on versions.
    constraint: str | None = None


LOCKS = (
    Lock("requirements.lock", ("requirements.txt",)),
    Lock(
        "requirements-dev.lock",
        ("requirements.txt", "requirements-dev.txt"),
        constraint="requirements.lock",
    ),
    # make deploy-check's own tools (helm SDK, Kubernetes schemas), own venv.
    Lock("deploy/requirements-deploy.lock", ("deploy/requirements-deploy.txt",)),
)


def inputs_digest(lock: Lock) -> str:
    digest = hashlib.sha256()
    for name in lock.inputs:
        digest.update(name.encode() + b"\0")
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def find_uv() -> str:
    for candidate in (Path(sys.executable).parent / "uv", shutil.which("uv")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise SystemExit("uv is not installed: `make lock` installs it into .venv")


def compile_lock(lock: Lock, uv: str, upgrade: bool) -> None:
    out = ROOT / lock.output
    # The last input includes the ones before it (-r requirements.txt).
    cmd = [
        uv,
        "pip",
        "compile",
        lock.inputs[-1],
        "--output-file",
        lock.output,
        "--generate-hashes",
        # One lock for every platform the image may be built for.
        "--universal",
        "--python-version",
        PYTHON_VERSION,
        "--no-header",
        "--quiet",
    ]
    if lock.constraint:
        cmd += ["--constraint", lock.constraint]
    if upgrade:
        cmd.append("--upgrade")
    # uv keeps the versions already pinned in the output file when they
    # still satisfy the ranges, so `make lock` changes only what it must.
    subprocess.run(cmd, cwd=ROOT, check=True)
    body = out.read_text(encoding="utf-8")
    header = (
        f"# Hash-pinned lock of {' + '.join(lock.inputs)} for Python {PYTHON_VERSION}.\n"
        "# Do not edit: change the requirements file, then run `make lock`\n"
        "# (`make lock UPGRADE=1` moves every pin to the newest allowed release).\n"
        f"{DIGEST_PREFIX}{inputs_digest(lock)}\n"
    )
    out.write_text(header + body, encoding="utf-8")
    print(f"wrote {lock.output}")


PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def read_pins(path: Path) -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = PIN.match(line)
        if match:
            pins[canonicalize_name(match.group(1))] = Version(match.group(2))
    return pins


def read_requirements(path: Path) -> list[Requirement]:
    requirements = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            requirements.append(Requirement(line))
        except InvalidRequirement as exc:
            raise SystemExit(f"{path.name}: {line!r}: {exc}") from None
    return requirements


def check_lock(lock: Lock) -> list[str]:
    out = ROOT / lock.output
    if not out.exists():
        return [f"{lock.output} is missing: run `make lock`"]
    text = out.read_text(encoding="utf-8")
    recorded = next(
        (
            line.removeprefix(DIGEST_PREFIX).strip()
            for line in text.splitlines()
            if line.startswith(DIGEST_PREFIX)
        ),
        None,
    )
    problems = []
    if recorded != inputs_digest(lock):
        problems.append(
            f"{lock.output} was compiled from other contents of {', '.join(lock.inputs)}: "
            "run `make lock` and commit the lock with the requirements change"
        )
    pins = read_pins(out)
    for name in lock.inputs:
        for req in read_requirements(ROOT / name):
            if req.marker and not req.marker.evaluate({"python_version": PYTHON_VERSION}):
                continue
            pinned = pins.get(canonicalize_name(req.name))
            if pinned is None:
                problems.append(f"{lock.output} does not pin {req.name} ({name}): run `make lock`")
            elif not req.specifier.contains(pinned, prereleases=True):
                problems.append(
                    f"{lock.output} pins {req.name}=={pinned}, outside {req.specifier} ({name}): "
                    "run `make lock`"
                )
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["compile", "check"])
    parser.add_argument("--upgrade", action="store_true", help="compile: newest allowed releases")
    args = parser.parse_args()
    if args.action == "compile":
        uv = find_uv()
        for lock in LOCKS:
            compile_lock(lock, uv, args.upgrade)
        return 0
    problems = [problem for lock in LOCKS for problem in check_lock(lock)]
    for problem in problems:
        print(f"lock check: {problem}", file=sys.stderr)
    if not problems:
        print("lock check: " + ", ".join(lock.output for lock in LOCKS) + " match their inputs")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
