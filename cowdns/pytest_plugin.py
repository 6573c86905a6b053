"""pytest plugin: fail any test that leaves a cowdns :class:`~cowdns.store.rwlock.RWLock` held.

Switch it on with ``cowdns_lockcheck = true`` in the ini file or with
``--cowdns-lockcheck``.  A test that deliberately leaves a lock held can opt
out with ``@pytest.mark.cowdns_allow_held_locks``.

A leaked read hold is harmless until a writer asks for the lock, so a test can
pass while the bug that will stop the server sits in the code under test; this
check makes the leak itself the failure, with the task and ``file:line`` that
took the hold.

The check runs after the *call* phase, because pytest-trio runs the whole trio
loop of a test (its async fixtures included) inside that phase: once it
returns, nothing can release a hold any more.  Failing there (rather than in
teardown) makes the test itself fail instead of reporting an error next to a
pass.  Only holds taken during the test are reported, so one leak is not blamed
on every test that follows it.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from cowdns.store.rwlock import LockHolder

__all__ = ["format_leaks", "pytest_addoption", "pytest_configure", "pytest_runtest_call"]

_OPTION = "cowdns_lockcheck"
_MARKER = "cowdns_allow_held_locks"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register ``--cowdns-lockcheck`` and the ``cowdns_lockcheck`` ini option."""
    group = parser.getgroup("cowdns")
    group.addoption(
        "--cowdns-lockcheck",
        action="store_true",
        default=False,
        dest=_OPTION,
        help="fail tests that leave a cowdns RWLock held (read or write)",
    )
    parser.addini(
        _OPTION,
        type="bool",
        default=False,
        help="fail tests that leave a cowdns RWLock held (read or write)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Declare the opt-out marker."""
    config.addinivalue_line(
        "markers",
        f"{_MARKER}: this test leaves cowdns RWLocks held on purpose; skip the lock check",
    )


def _enabled(config: pytest.Config) -> bool:
    return bool(config.getoption(_OPTION)) or bool(config.getini(_OPTION))


def format_leaks(holders: list[LockHolder]) -> str:
    """The failure message: one line per hold left behind."""
    lines = [f"cowdns lockcheck: the test left {len(holders)} lock hold(s) in place:"]
    lines.extend(f"  {holder.describe()}" for holder in holders)
    return "\n".join(lines)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """Fail the test if it took a lock hold and never released it."""
    if not _enabled(item.config) or item.get_closest_marker(_MARKER) is not None:
        return (yield)
    # Imported here so that merely installing the plugin imports nothing of cowdns.
    from cowdns.store import rwlock

    start = rwlock.hold_serial()
    try:
        result = yield
    except Exception as exc:
        # The test failed anyway; a leak is often why (a deadlock, a timeout), so say so.
        leaks = rwlock.holds_since(start)
        if leaks:
            exc.add_note(format_leaks(leaks))
        raise
    leaks = rwlock.holds_since(start)
    if leaks:
        pytest.fail(format_leaks(leaks), pytrace=False)
    return result
