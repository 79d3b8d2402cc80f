"""The tests' one polling helper: returns early, fails by name, bounded."""

from __future__ import annotations

import time

import pytest

from tests.waiting import wait_until


def test_returns_as_soon_as_the_condition_holds() -> None:
    calls: list[float] = []

    def third_call() -> bool:
        calls.append(time.monotonic())
        return len(calls) == 3

    took = wait_until(third_call, timeout=5, interval=0.01)
    assert len(calls) == 3
    assert took < 1


def test_fails_at_the_deadline_naming_the_condition_and_its_state() -> None:
    seen = {"hits": 0}

    def never() -> bool:
        seen["hits"] += 1
        return False

    started = time.monotonic()
    with pytest.raises(AssertionError) as failure:
        wait_until(never, timeout=0.2, interval=0.05, what=lambda: f"ten hits (saw {seen['hits']})")
    assert 0.2 <= time.monotonic() - started < 1
    assert f"timed out after 0.2s waiting for ten hits (saw {seen['hits']})" == str(failure.value)
    assert seen["hits"] >= 3


def test_ignored_errors_mean_not_yet_and_are_quoted() -> None:
    attempts = iter([ConnectionError("refused"), ConnectionError("refused"), True])

    def flaky() -> bool:
        outcome = next(attempts)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    wait_until(flaky, timeout=5, interval=0.01, ignoring=(ConnectionError,))
    with pytest.raises(AssertionError, match=r"server up \(last error: OSError: down\)"):
        wait_until(_raise_os_error, timeout=0.1, what="server up", ignoring=(OSError,))


def test_other_errors_propagate_at_once() -> None:
    with pytest.raises(KeyError):
        wait_until(lambda: {}["missing"], timeout=5, ignoring=(OSError,))


def test_rejects_a_non_positive_timeout() -> None:
    with pytest.raises(ValueError, match="timeout"):
        wait_until(lambda: True, timeout=0)


def _raise_os_error() -> bool:
    raise OSError("down")
