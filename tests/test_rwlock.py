"""The Go-style RWLock and its watchdog: exclusion, write bias, handoff, cancellation, blame."""

from __future__ import annotations

import gc
import logging
import sys
from functools import partial

import pytest
import trio
import trio.testing
from trio.testing import wait_all_tasks_blocked

from cowdns.errors import LockError
from cowdns.store import rwlock
from cowdns.store.rwlock import RWLock
from cowdns.store.watchdog import LockHealth, watch_lock


def here() -> int:
    """The caller's line number, to predict acquisition sites."""
    return sys._getframe(1).f_lineno


async def hold_read(lock: RWLock, release: trio.Event, entered: list[str], name: str) -> None:
    async with lock.read():
        entered.append(name)
        await release.wait()


async def hold_write(lock: RWLock, release: trio.Event, entered: list[str], name: str) -> None:
    async with lock.write():
        entered.append(name)
        await release.wait()


# -- exclusion ------------------------------------------------------------------


async def test_many_readers_hold_at_once() -> None:
    lock = RWLock("t")
    release = trio.Event()
    entered: list[str] = []
    async with trio.open_nursery() as nursery:
        for i in range(5):
            nursery.start_soon(hold_read, lock, release, entered, f"r{i}")
        await wait_all_tasks_blocked()
        stats = lock.statistics()
        assert sorted(entered) == [f"r{i}" for i in range(5)]
        assert stats.readers == 5
        assert len(stats.read_holders) == 5
        assert not stats.writer_held
        release.set()
    assert not lock.locked()


async def test_writer_excludes_readers_and_other_writers() -> None:
    lock = RWLock("t")
    await lock.acquire_write()
    entered: list[str] = []
    release = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold_read, lock, release, entered, "reader")
        nursery.start_soon(hold_write, lock, release, entered, "writer2")
        await wait_all_tasks_blocked()
        assert entered == []
        stats = lock.statistics()
        assert stats.writer_held
        assert stats.readers_waiting == 1
        assert stats.writers_waiting == 1
        with pytest.raises(trio.WouldBlock):
            lock.acquire_read_nowait()
        lock.release_write()
        # Readers queued behind a writer go before the next writer (Go's alternation).
        await wait_all_tasks_blocked()
        assert entered == ["reader"]
        release.set()
    assert entered == ["reader", "writer2"]
    assert not lock.locked()


async def test_writer_waits_for_every_reader() -> None:
    lock = RWLock("t")
    await lock.acquire_read()
    entered: list[str] = []
    release = trio.Event()
    release.set()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold_write, lock, release, entered, "writer")
        await wait_all_tasks_blocked()
        assert entered == []
        assert lock.statistics().writers_waiting == 1
        lock.release_read()
    assert entered == ["writer"]


async def test_waiting_writer_blocks_new_readers() -> None:
    """The deadlock shape: reader A holds, writer W waits, so reader B cannot get in."""
    lock = RWLock("t")
    entered: list[str] = []
    release_a = trio.Event()
    release_w = trio.Event()
    release_b = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold_read, lock, release_a, entered, "A")
        await wait_all_tasks_blocked()
        nursery.start_soon(hold_write, lock, release_w, entered, "W")
        await wait_all_tasks_blocked()
        nursery.start_soon(hold_read, lock, release_b, entered, "B")
        await wait_all_tasks_blocked()
        assert entered == ["A"]
        stats = lock.statistics()
        assert (stats.readers, stats.writers_waiting, stats.readers_waiting) == (1, 1, 1)
        with pytest.raises(trio.WouldBlock):
            lock.acquire_read_nowait()

        release_a.set()
        await wait_all_tasks_blocked()
        assert entered == ["A", "W"]
        release_w.set()
        await wait_all_tasks_blocked()
        assert entered == ["A", "W", "B"]
        release_b.set()
    assert not lock.locked()


async def test_nested_read_is_allowed_without_a_waiting_writer() -> None:
    lock = RWLock("t")
    await lock.acquire_read()
    await lock.acquire_read()
    assert lock.statistics().readers == 2
    lock.release_read()
    lock.release_read()
    assert not lock.locked()


async def test_async_with_releases_on_error() -> None:
    lock = RWLock("t")
    with pytest.raises(ValueError, match="boom"):
        async with lock.read():
            assert lock.statistics().readers == 1
            raise ValueError("boom")
    with pytest.raises(ValueError, match="boom"):
        async with lock.write():
            assert lock.statistics().writer_held
            raise ValueError("boom")
    assert not lock.locked()


# -- misuse ---------------------------------------------------------------------


async def test_releasing_an_unheld_lock_raises() -> None:
    lock = RWLock("t")
    with pytest.raises(LockError, match="not held"):
        lock.release_read()
    with pytest.raises(LockError, match="not write-locked"):
        lock.release_write()
    await lock.acquire_read()
    with pytest.raises(LockError, match="not write-locked"):
        lock.release_write()
    lock.release_read()
    with pytest.raises(LockError):
        lock.release_read()
    assert not lock.locked()


async def test_release_read_by_a_task_holding_none_raises() -> None:
    lock = RWLock("t")
    await lock.acquire_read()
    errors: list[LockError] = []

    async def stranger() -> None:
        try:
            lock.release_read()
        except LockError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stranger, name="stranger")
    assert len(errors) == 1
    assert "'stranger'" in str(errors[0])
    # The failed release did not take our hold away.
    assert lock.statistics().readers == 1
    lock.release_read()


async def test_release_write_by_another_task_raises() -> None:
    lock = RWLock("t")
    await lock.acquire_write()
    errors: list[LockError] = []

    async def stranger() -> None:
        try:
            lock.release_write()
        except LockError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stranger)
    assert len(errors) == 1
    assert lock.statistics().writer_held
    lock.release_write()


async def test_asking_for_the_write_lock_while_holding_it_raises() -> None:
    lock = RWLock("t")
    await lock.acquire_read()
    with pytest.raises(LockError, match="wait for itself"):
        await lock.acquire_write()
    lock.release_read()
    await lock.acquire_write()
    with pytest.raises(LockError, match="already holds"):
        lock.acquire_write_nowait()
    lock.release_write()
    assert not lock.locked()


# -- cancellation and handoff ---------------------------------------------------


async def test_cancelled_waiting_reader_leaves_no_trace() -> None:
    lock = RWLock("t")
    await lock.acquire_write()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lock.acquire_read)
        await wait_all_tasks_blocked()
        assert lock.statistics().readers_waiting == 1
        nursery.cancel_scope.cancel()
    stats = lock.statistics()
    assert stats.readers_waiting == 0
    lock.release_write()
    # Had the cancelled reader been granted on release, the lock would still be held.
    assert not lock.locked()
    assert lock.statistics().readers == 0


async def test_cancelled_waiting_writer_lets_parked_readers_in() -> None:
    lock = RWLock("t")
    entered: list[str] = []
    release = trio.Event()
    await lock.acquire_read()
    async with trio.open_nursery() as nursery:
        writer_scope = trio.CancelScope()

        async def writer() -> None:
            with writer_scope:
                await lock.acquire_write()
                entered.append("W")

        nursery.start_soon(writer)
        await wait_all_tasks_blocked()
        nursery.start_soon(hold_read, lock, release, entered, "B")
        await wait_all_tasks_blocked()
        assert entered == []
        writer_scope.cancel()
        await wait_all_tasks_blocked()
        assert entered == ["B"]
        stats = lock.statistics()
        assert (stats.readers, stats.writers_waiting, stats.readers_waiting) == (2, 0, 0)
        assert stats.writer_waiting_since is None
        release.set()
    lock.release_read()
    assert not lock.locked()


async def test_cancelled_writer_keeps_readers_out_while_another_writer_waits() -> None:
    lock = RWLock("t")
    entered: list[str] = []
    release = trio.Event()
    release.set()
    await lock.acquire_read()
    async with trio.open_nursery() as nursery:
        first = trio.CancelScope()

        async def cancellable_writer() -> None:
            with first:
                await lock.acquire_write()

        nursery.start_soon(cancellable_writer)
        await wait_all_tasks_blocked()
        nursery.start_soon(hold_write, lock, release, entered, "W2")
        await wait_all_tasks_blocked()
        nursery.start_soon(hold_read, lock, release, entered, "B")
        await wait_all_tasks_blocked()
        first.cancel()
        await wait_all_tasks_blocked()
        assert entered == []
        assert lock.statistics().readers_waiting == 1
        lock.release_read()
    assert entered == ["W2", "B"]


async def test_ownership_is_handed_to_the_woken_writer() -> None:
    lock = RWLock("t")
    entered: list[str] = []
    release = trio.Event()
    await lock.acquire_read()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold_write, lock, release, entered, "W")
        await wait_all_tasks_blocked()
        lock.release_read()
        # W has not run yet, but it already owns the lock: nobody can slip in between.
        assert entered == []
        assert lock.statistics().writer_held
        with pytest.raises(trio.WouldBlock):
            lock.acquire_write_nowait()
        with pytest.raises(trio.WouldBlock):
            lock.acquire_read_nowait()
        release.set()


async def test_ownership_is_handed_to_the_woken_readers() -> None:
    lock = RWLock("t")
    entered: list[str] = []
    release = trio.Event()
    await lock.acquire_write()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold_read, lock, release, entered, "R1")
        nursery.start_soon(hold_read, lock, release, entered, "R2")
        await wait_all_tasks_blocked()
        lock.release_write()
        assert entered == []
        assert lock.statistics().readers == 2
        with pytest.raises(trio.WouldBlock):
            lock.acquire_write_nowait()
        release.set()


# -- checkpoints ----------------------------------------------------------------


async def test_acquire_is_a_checkpoint_even_uncontended() -> None:
    lock = RWLock("t")
    with trio.testing.assert_checkpoints():
        await lock.acquire_read()
    lock.release_read()
    with trio.testing.assert_checkpoints():
        await lock.acquire_write()
    lock.release_write()
    with trio.testing.assert_checkpoints():
        async with lock.read():
            pass


async def test_cancelled_before_acquiring_takes_nothing() -> None:
    lock = RWLock("t")
    with trio.CancelScope() as scope:
        scope.cancel()
        await lock.acquire_read()
    with trio.CancelScope() as scope:
        scope.cancel()
        await lock.acquire_write()
    assert not lock.locked()


async def test_release_is_synchronous() -> None:
    lock = RWLock("t")
    await lock.acquire_read()
    with trio.testing.assert_no_checkpoints():
        lock.release_read()


# -- statistics and registries --------------------------------------------------


async def test_statistics_name_holders_and_sites(autojump_clock: trio.abc.Clock) -> None:
    lock = RWLock("table")
    await trio.sleep(5)
    line = here() + 1
    await lock.acquire_read()
    read_line = here() + 1
    async with lock.read():
        stats = lock.statistics()
    lock.release_read()
    assert stats.readers == 2
    first, second = stats.read_holders
    assert first.site == f"{__file__}:{line}"
    assert second.site == f"{__file__}:{read_line}"
    assert first.function == "test_statistics_name_holders_and_sites"
    assert first.task == trio.lowlevel.current_task().name
    assert first.mode == "read"
    assert first.lock == "table"
    assert first.since == pytest.approx(5.0)
    assert "table" in first.describe(now=8.0)
    assert "3.0s ago" in first.describe(now=8.0)
    assert f"{__file__}:{line}" in first.describe()


async def test_statistics_of_a_waiting_writer(autojump_clock: trio.abc.Clock) -> None:
    lock = RWLock("t")
    release = trio.Event()
    entered: list[str] = []
    await lock.acquire_read()
    async with trio.open_nursery() as nursery:
        await trio.sleep(2)
        nursery.start_soon(hold_write, lock, release, entered, "W", name="reload")
        await wait_all_tasks_blocked()
        stats = lock.statistics()
        assert stats.writer_waiting_since == pytest.approx(2.0)
        assert stats.writers_waiting == 1
        assert stats.write_grants == 0
        await trio.sleep(1)
        lock.release_read()
        await wait_all_tasks_blocked()
        stats = lock.statistics()
        assert stats.writer is not None
        assert stats.writer.task == "reload"
        assert stats.writer.mode == "write"
        assert stats.writer.function == "hold_write"
        # Granted at t=3: "since" is when it got the lock, not when it queued.
        assert stats.writer.since == pytest.approx(3.0)
        assert stats.writer_waiting_since is None
        assert stats.write_grants == 1
        assert stats.holders == (stats.writer,)
        release.set()


async def test_stacklevel_blames_the_callers_caller() -> None:
    lock = RWLock("t")

    async def helper() -> None:
        await lock.acquire_read(stacklevel=2)

    line = here() + 1
    await helper()
    (holder,) = lock.statistics().read_holders
    assert holder.site == f"{__file__}:{line}"
    lock.release_read()


async def test_nowait_acquisitions_record_the_callers_line() -> None:
    lock = RWLock("t")
    line = here() + 1
    lock.acquire_read_nowait()
    assert lock.statistics().read_holders[0].site == f"{__file__}:{line}"
    lock.release_read()
    line = here() + 1
    lock.acquire_write_nowait()
    writer = lock.statistics().writer
    assert writer is not None
    assert writer.site == f"{__file__}:{line}"
    lock.release_write()


async def test_registries_track_live_and_held_locks() -> None:
    lock = RWLock("registered")
    assert lock in rwlock.live_locks()
    assert lock not in rwlock.held_locks()
    before = rwlock.hold_serial()
    await lock.acquire_read()
    assert lock in rwlock.held_locks()
    (leak,) = rwlock.holds_since(before)
    assert leak.lock == "registered"
    lock.release_read()
    assert lock not in rwlock.held_locks()
    assert rwlock.holds_since(before) == []

    # The live registry is weak; the held one keeps a dropped-while-held lock findable.
    dropped = RWLock("dropped")
    await dropped.acquire_read()
    del dropped
    gc.collect()
    (leak,) = rwlock.holds_since(before)
    assert leak.lock == "dropped"
    held = next(candidate for candidate in rwlock.held_locks() if candidate.name == "dropped")
    held.release_read()
    del held
    gc.collect()
    assert all(candidate.name != "dropped" for candidate in rwlock.live_locks())


# -- watchdog ---------------------------------------------------------------------


async def test_watchdog_trips_once_naming_holders_and_recovers(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cowdns.lock")
    lock = RWLock("table")
    trips: list[str] = []
    tripped = trio.Event()
    leak_released = trio.Event()
    leak_line = 0

    def on_trip(message: str) -> None:
        trips.append(message)
        tripped.set()

    async def leaky_query() -> None:
        nonlocal leak_line
        leak_line = here() + 1
        await lock.acquire_read()
        await leak_released.wait()
        lock.release_read()

    async def reload() -> None:
        async with lock.write():
            pass

    async with trio.open_nursery() as nursery:
        health: LockHealth = await nursery.start(partial(watch_lock, lock, 10.0, on_trip=on_trip))
        assert health.healthy
        nursery.start_soon(leaky_query, name="leaky-query")
        await trio.sleep(30)
        # Held for a long time, but no writer waits: nothing to report yet.
        assert health.healthy
        nursery.start_soon(reload, name="reloader")
        await trio.sleep(9)
        assert health.healthy
        await tripped.wait()
        assert trio.current_time() == pytest.approx(40.0, abs=3.0)
        assert not health.healthy
        await trio.sleep(100)
        assert len(trips) == 1
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        message = errors[0].getMessage()
        assert message == trips[0] == health.reason
        assert "'leaky-query'" in message
        assert f"{__file__}:{leak_line}" in message
        assert "in leaky_query()" in message
        assert "s ago" in message
        assert health.trips == 1

        leak_released.set()
        await trio.sleep(10)
        assert health.healthy
        assert health.reason == ""
        assert lock.statistics().write_grants == 1
        nursery.cancel_scope.cancel()


async def test_watchdog_reports_a_new_incident_after_recovering(
    autojump_clock: trio.abc.Clock,
) -> None:
    lock = RWLock("t")
    trips: list[str] = []

    async def one_incident() -> None:
        release = trio.Event()
        entered: list[str] = []
        async with trio.open_nursery() as inner:
            inner.start_soon(hold_read, lock, release, entered, "r")
            await wait_all_tasks_blocked()
            inner.start_soon(hold_write, lock, release, entered, "w")
            await trio.sleep(20)
            release.set()
        assert entered == ["r", "w"]

    async with trio.open_nursery() as nursery:
        health = await nursery.start(partial(watch_lock, lock, 5.0, on_trip=trips.append))
        await one_incident()
        await trio.sleep(5)
        assert health.healthy
        await one_incident()
        await trio.sleep(5)
        assert health.healthy
        assert len(trips) == 2
        assert health.trips == 2
        nursery.cancel_scope.cancel()


async def test_watchdog_rejects_a_useless_threshold() -> None:
    with pytest.raises(ValueError, match="threshold"):
        await watch_lock(RWLock("t"), 0)
