"""The lockcheck pytest plugin: a test that leaves an RWLock held fails, naming the site.

Each case runs pytest in a subprocess: the plugin's registries are process-wide,
and an in-process run would leave its deliberate leaks in this process.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

# Installed, the plugin loads itself through its pytest11 entry point (and a second
# "-p" would clash with it); from a source tree without it, load it by module name.
PLUGIN_ARGS = (
    ()
    if any(ep.value == "cowdns.pytest_plugin" for ep in entry_points(group="pytest11"))
    else ("-p", "cowdns.pytest_plugin")
)

pytest_plugins = ["pytester"]

INI = """
[pytest]
trio_mode = true
"""

# Line numbers below matter: the assertions name them.
TESTS = """\
import pytest
from cowdns.store.rwlock import RWLock

SHARED = RWLock("shared")


async def test_leaks_a_read_hold():
    await SHARED.acquire_read()


async def test_releases():
    async with SHARED.read():
        pass


async def test_after_a_leak_is_not_blamed():
    pass


async def test_leaks_a_lock_it_then_drops():
    lock = RWLock("dropped")
    await lock.acquire_write()


@pytest.mark.cowdns_allow_held_locks
async def test_allowed_to_leak():
    await RWLock("allowed").acquire_read()


async def test_fails_and_leaks():
    await RWLock("also").acquire_read()
    assert False, "the test's own failure"
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makeini(INI)
    pytester.makepyfile(test_inner=TESTS)
    return pytester.runpytest_subprocess(*PLUGIN_ARGS, "-v", *args)


def outcome_of(result: pytest.RunResult, test: str) -> str:
    for line in result.outlines:
        if line.startswith(f"test_inner.py::{test} "):
            return line.split()[1]
    raise AssertionError(f"{test} not in the output:\n{result.stdout.str()}")


def test_flag_fails_tests_that_leave_locks_held(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--cowdns-lockcheck")
    assert outcome_of(result, "test_leaks_a_read_hold") == "FAILED"
    assert outcome_of(result, "test_releases") == "PASSED"
    assert outcome_of(result, "test_after_a_leak_is_not_blamed") == "PASSED"
    assert outcome_of(result, "test_leaks_a_lock_it_then_drops") == "FAILED"
    assert outcome_of(result, "test_allowed_to_leak") == "PASSED"
    assert outcome_of(result, "test_fails_and_leaks") == "FAILED"
    result.assert_outcomes(passed=3, failed=3)
    result.stdout.fnmatch_lines(
        [
            "*cowdns lockcheck: the test left 1 lock hold(s) in place:",
            "*read lock on 'shared' held by task *, acquired at */test_inner.py:8"
            " in test_leaks_a_read_hold()",
        ]
    )
    result.stdout.fnmatch_lines(
        ["*write lock on 'dropped' held by task *, acquired at */test_inner.py:22*"]
    )
    # A test that fails anyway keeps its own failure and gets the leak as a note.
    result.stdout.fnmatch_lines(
        [
            "*read lock on 'also' held by task *, acquired at */test_inner.py:31*",
            "*AssertionError: the test's own failure*",
        ]
    )
    assert "'allowed'" not in result.stdout.str()


def test_ini_option_switches_the_check_on(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI + "cowdns_lockcheck = true\n")
    pytester.makepyfile(test_inner=TESTS)
    result = pytester.runpytest_subprocess(*PLUGIN_ARGS, "-v")
    assert outcome_of(result, "test_leaks_a_read_hold") == "FAILED"
    assert outcome_of(result, "test_releases") == "PASSED"
    result.stdout.fnmatch_lines(["*acquired at */test_inner.py:8 in test_leaks_a_read_hold()"])


def test_check_is_off_by_default(pytester: pytest.Pytester) -> None:
    result = run(pytester)
    result.assert_outcomes(passed=5, failed=1)
    assert "cowdns lockcheck" not in result.stdout.str()
