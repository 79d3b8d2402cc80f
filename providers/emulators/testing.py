"""Start, control and stop emulator subprocesses from tests and scripts.

Typical pytest use (any kind registered in :data:`providers.emulators.EMULATORS`)::

    from providers.emulators.testing import start_emulator

    @pytest.fixture(scope="module")
    def gigachat_emulator() -> Iterator[RunningEmulator]:
        emulator = start_emulator("gigachat", stream_tokens=5, chunk_interval_ms=10)
        try:
            yield emulator
        finally:
            emulator.stop()

    def test_something(gigachat_emulator: RunningEmulator) -> None:
        gigachat_emulator.control.reset()
        ...  # point the client at gigachat_emulator.base_url
        assert gigachat_emulator.control.stats()["requests_total"] == 1

The emulator runs as a real process (``python -m providers.emulators``) so
the code under test talks to it over TCP exactly as it would to the real
provider, and gevent's monkey-patching never leaks into the test process.
This module uses only the standard library.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from providers.emulators import EMULATORS

__all__ = [
    "EmulatorControl",
    "EmulatorStartError",
    "RunningEmulator",
    "knob_arguments",
    "running_emulator",
    "start_emulator",
]

#: Directory that must be on sys.path for ``-m providers.emulators``.
REPO_ROOT = Path(__file__).resolve().parents[2]

_READY_RE = re.compile(r"emulator (\S+) listening on (http://\S+)")


class EmulatorStartError(RuntimeError):
    """The emulator process exited or did not become healthy in time."""


class EmulatorControl:
    """Client for the ``/_emulator/*`` control endpoints of any emulator."""

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        """Talk to the emulator at ``base_url`` (``http://host:port``)."""
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"emulator URL must be http(s): {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, payload: object | None = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        # The scheme is checked in __init__, so urlopen cannot reach file: URLs.
        request = urllib.request.Request(  # noqa: S310
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            raise ValueError(f"{method} {path} -> {exc.code}: {detail}") from None

    def health(self) -> dict[str, Any]:
        """Return ``GET /_emulator/health``."""
        result: dict[str, Any] = self._call("GET", "/_emulator/health")
        return result

    def stats(self) -> dict[str, Any]:
        """Return ``GET /_emulator/stats``."""
        result: dict[str, Any] = self._call("GET", "/_emulator/stats")
        return result

    def config(self) -> dict[str, Any]:
        """Return the current knobs."""
        result: dict[str, Any] = self._call("GET", "/_emulator/config")
        return result

    def set_config(self, **changes: object) -> dict[str, Any]:
        """Partially update the knobs; raise ``ValueError`` if rejected."""
        result: dict[str, Any] = self._call("POST", "/_emulator/config", changes)
        return result

    def reset(self) -> None:
        """Restore the start-up knobs and zero the stats."""
        self._call("POST", "/_emulator/reset", {})

    def wait_for(
        self, predicate: Any, timeout: float = 2.0, interval: float = 0.02
    ) -> dict[str, Any]:
        """Poll stats until ``predicate(stats)`` is true; return those stats.

        Raises ``AssertionError`` with the last stats on timeout, which reads
        well in a failing test.
        """
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if predicate(stats):
                return stats
            if time.monotonic() >= deadline:
                raise AssertionError(f"emulator stats never matched: {stats}")
            time.sleep(interval)


@dataclass
class RunningEmulator:
    """Handle on an emulator subprocess started by :func:`start_emulator`."""

    kind: str
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    control: EmulatorControl = field(init=False)
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        """Attach a control client."""
        self.control = EmulatorControl(self.base_url)

    @property
    def port(self) -> int:
        """The TCP port the emulator listens on."""
        return int(self.base_url.rsplit(":", 1)[1])

    def url(self, path: str) -> str:
        """Return an absolute URL for ``path`` (e.g. ``/v1/models``)."""
        return self.base_url + "/" + path.lstrip("/")

    def log_text(self) -> str:
        """Return what the process wrote to stdout/stderr so far."""
        try:
            return self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the process (kill if it lingers) and remove its log."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        with contextlib.suppress(OSError):
            self.log_path.unlink()


def knob_arguments(knobs: Mapping[str, object]) -> list[str]:
    """Turn ``{"latency_ms": 5, "strict_models": True}`` into CLI flags."""
    args: list[str] = []
    for name, value in knobs.items():
        flag = "--" + name.replace("_", "-")
        if value is None:
            continue
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + name.replace("_", "-"))
        else:
            args += [flag, str(value)]
    return args


def start_emulator(
    kind: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ready_timeout: float = 20.0,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    knobs: Mapping[str, object] | None = None,
    **more_knobs: object,
) -> RunningEmulator:
    """Start ``python -m providers.emulators <kind>`` and wait until healthy.

    ``port=0`` lets the emulator bind a free port itself (no race between
    picking and binding); the URL is read from its ready line.  Knobs, given
    as a ``knobs`` mapping and/or keyword arguments, are passed as CLI flags
    (``stream_tokens=5`` -> ``--stream-tokens 5``).
    The caller must call :meth:`RunningEmulator.stop` (or use
    :func:`running_emulator`).
    """
    if kind not in EMULATORS:
        raise ValueError(f"unknown emulator kind {kind!r}; known: {sorted(EMULATORS)}")
    command = [
        sys.executable,
        "-m",
        "providers.emulators",
        kind,
        "--host",
        host,
        "--port",
        str(port),
        *knob_arguments({**(knobs or {}), **more_knobs}),
        *extra_args,
    ]
    child_env = dict(os.environ if env is None else env)
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), child_env.get("PYTHONPATH", "")) if p
    )
    # Unbuffered so the ready line and any traceback reach the log at once.
    child_env["PYTHONUNBUFFERED"] = "1"
    # A file, not a pipe: nobody drains a pipe during the test, and a full
    # pipe would block the emulator on its next log write.
    fd, log_name = tempfile.mkstemp(prefix=f"emulator-{kind}-", suffix=".log")
    log_file = os.fdopen(fd, "wb")
    process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        command,
        cwd=str(REPO_ROOT),
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    log_path = Path(log_name)
    deadline = time.monotonic() + ready_timeout
    base_url: str | None = None
    try:
        while base_url is None:
            match = _READY_RE.search(log_path.read_text("utf-8", "replace"))
            if match:
                base_url = match.group(2)
                break
            _check_alive(process, log_path, deadline)
            time.sleep(0.02)
        emulator = RunningEmulator(kind, base_url, process, log_path, _log_file=log_file)
        while True:
            try:
                if emulator.control.health().get("status") == "ok":
                    return emulator
            except (OSError, ValueError):
                pass
            _check_alive(process, log_path, deadline)
            time.sleep(0.02)
    except BaseException:
        if process.poll() is None:
            process.kill()
            process.wait(5)
        log_file.close()
        # The log's content is already in the exception message.
        with contextlib.suppress(OSError):
            log_path.unlink()
        raise


def _check_alive(process: subprocess.Popen[bytes], log_path: Path, deadline: float) -> None:
    if process.poll() is not None:
        raise EmulatorStartError(
            f"emulator exited with {process.returncode}:\n" + log_path.read_text("utf-8", "replace")
        )
    if time.monotonic() > deadline:
        raise EmulatorStartError(
            "emulator not healthy in time:\n" + log_path.read_text("utf-8", "replace")
        )


@contextlib.contextmanager
def running_emulator(kind: str, **kwargs: Any) -> Iterator[RunningEmulator]:
    """Context manager around :func:`start_emulator` that always stops it."""
    emulator = start_emulator(kind, **kwargs)
    try:
        yield emulator
    finally:
        emulator.stop()
