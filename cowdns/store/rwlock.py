"""A read/write lock for trio with Go ``sync.RWMutex`` semantics, built to be diagnosed.

Invariant: at any moment either ``_writer`` is set and there are no read holds,
or ``_writer`` is None and any number of read holds exist.  A task parked in
``_read_lot`` waits only while a writer holds the lock or one is queued; a task
parked in ``_write_lot`` waits only while the lock is held.  Whoever changes the
state in a way that ends a wait grants the lock to the woken tasks *before*
they run (ownership handoff, as :class:`trio.Lock` does), so a task arriving in
between can never slip in front of them.

Write-biased, like Go: a *waiting* writer blocks new readers, so a steady flow
of queries cannot starve the reloader.  This is also exactly why one leaked read
hold stops the whole server as soon as a reload asks for the write lock, and
why every hold records the task and the code location that took it: the lock
has to be able to say who is to blame.  Releasing the write lock admits every
reader queued behind it before the next writer (Go's alternation).

Rejected:

* two parking lots without handoff (waking tasks that then re-check the state):
  a reader arriving between wake-up and run-time could overtake a writer, and a
  cancelled waiter could lose a wake-up meant for it;
* task-fair ordering on one lot: trio's ParkingLot has no per-task tokens, and
  Go's semantics are what we need to reproduce;
* breaking the lot when a holder task exits (``add_parking_lot_breaker``): Go
  does not, and locked mode exists to reproduce the Go failure faithfully;
  leaks are reported by the watchdog and the pytest plugin instead;
* handing read locks across tasks: Go allows any goroutine to ``RUnlock``, but
  per-task holds are what make a leak attributable, so ``release_read`` from a
  task that holds no read lock is a :class:`~cowdns.errors.LockError`.
"""

from __future__ import annotations

import sys
import types
import weakref
from dataclasses import dataclass
from typing import Literal

import trio
from trio.lowlevel import ParkingLot, Task, current_task, enable_ki_protection

from cowdns.errors import LockError

__all__ = [
    "LockHolder",
    "RWLock",
    "RWLockStatistics",
    "held_locks",
    "hold_serial",
    "holds_since",
    "live_locks",
]

Mode = Literal["read", "write"]

# Every lock ever created and still alive, for tooling (the pytest plugin, debuggers).
_LIVE: weakref.WeakSet[RWLock] = weakref.WeakSet()

# Locks that are held right now, strongly referenced: a lock leaked by an object that
# was then dropped would otherwise vanish from the weak registry before anyone could
# report the leak.  A lock leaves this set as soon as its last hold is released.
_HELD: set[RWLock] = set()

# Serial number of the last hold created, across all locks: lets a checker report only
# the holds taken after a given moment (for example, during one test).
_serial = 0


def _next_serial() -> int:
    global _serial
    _serial += 1
    return _serial


def hold_serial() -> int:
    """Serial number of the most recent hold on any lock (0 before the first)."""
    return _serial


def live_locks() -> list[RWLock]:
    """Every RWLock instance still alive."""
    return list(_LIVE)


def held_locks() -> list[RWLock]:
    """Every RWLock that is read- or write-held right now."""
    return list(_HELD)


def holds_since(serial: int) -> list[LockHolder]:
    """Holds still in place that were taken after :func:`hold_serial` returned ``serial``."""
    found = [
        holder
        for lock in held_locks()
        for holder in lock.statistics().holders
        if holder.serial > serial
    ]
    found.sort(key=lambda holder: holder.serial)
    return found


@dataclass(frozen=True, slots=True)
class LockHolder:
    """One hold on a lock: who took it, where, and when.

    ``site`` is ``"file:line"`` of the code that called ``acquire_read`` (or
    ``read()``, ``acquire_write``, ``write()``); ``since`` is on the trio clock
    (:func:`trio.current_time`) of the run that took it.
    """

    lock: str
    mode: Mode
    task: str
    site: str
    function: str
    since: float
    serial: int

    def describe(self, now: float | None = None) -> str:
        """One line for humans; with ``now`` (trio clock) it says how long ago."""
        ago = "" if now is None else f" {now - self.since:.1f}s ago"
        return (
            f"{self.mode} lock on {self.lock!r} held by task {self.task!r},"
            f" acquired at {self.site} in {self.function}(){ago}"
        )


@dataclass(frozen=True, slots=True)
class RWLockStatistics:
    """What an :class:`RWLock` looks like right now (a copy; it does not change)."""

    readers: int
    writer_held: bool
    writers_waiting: int
    readers_waiting: int
    writer_waiting_since: float | None
    """Trio-clock time the longest-waiting writer started waiting, or None."""
    read_holders: tuple[LockHolder, ...]
    """Read holds in acquisition order."""
    writer: LockHolder | None
    write_grants: int
    """How many times the write lock has been granted: lets a watchdog see a writer get in."""

    @property
    def holders(self) -> tuple[LockHolder, ...]:
        """Every hold, read or write."""
        return self.read_holders if self.writer is None else (self.writer,)


# (file, line, function) of the code that asked for the lock.  We keep the parts, not
# the frame: a frame would keep every local of the caller alive, and formatting
# "file:line" is left to whoever looks, off the hot path.
_Site = tuple[str, int, str]


def _site(frame: types.FrameType) -> _Site:
    return frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name


class _Hold:
    """One hold or queued request; ``since`` is reset when a queued request is granted."""

    __slots__ = ("mode", "serial", "since", "site", "task")

    def __init__(self, mode: Mode, task: Task, site: _Site) -> None:
        self.mode: Mode = mode
        self.task = task
        self.site = site
        self.since = trio.current_time()
        self.serial = _next_serial()

    def view(self, lock: str) -> LockHolder:
        filename, lineno, function = self.site
        return LockHolder(
            lock,
            self.mode,
            self.task.name,
            f"{filename}:{lineno}",
            function,
            self.since,
            self.serial,
        )


class RWLock:
    """Many readers or one writer; a waiting writer blocks new readers (Go ``sync.RWMutex``).

    Not re-entrant for writers; a task may take the read lock more than once,
    but, exactly as in Go, a nested read lock deadlocks once a writer is queued.
    """

    def __init__(self, name: str = "") -> None:
        self.name = name or f"RWLock@{id(self):#x}"
        self._read_holds: dict[Task, list[_Hold]] = {}
        self._readers = 0
        self._writer: _Hold | None = None
        self._read_lot = ParkingLot()
        self._write_lot = ParkingLot()
        self._queued_readers: dict[Task, _Hold] = {}
        self._queued_writers: dict[Task, _Hold] = {}
        self._write_grants = 0
        _LIVE.add(self)

    def __repr__(self) -> str:
        if self._writer is not None:
            state = f"write-locked by {self._writer.task.name!r}"
        elif self._readers:
            state = f"read-locked by {self._readers}"
        else:
            state = "unlocked"
        return (
            f"<RWLock {self.name!r} {state}, {len(self._write_lot)} writers and"
            f" {len(self._read_lot)} readers waiting>"
        )

    # -- state changes (no awaits: each one is atomic with respect to other tasks) ----

    def _grant_read(self, hold: _Hold) -> None:
        if self._readers == 0:
            _HELD.add(self)
        self._read_holds.setdefault(hold.task, []).append(hold)
        self._readers += 1

    def _grant_write(self, hold: _Hold) -> None:
        _HELD.add(self)
        self._writer = hold
        self._write_grants += 1

    def _admit_queued_readers(self, now: float) -> None:
        for task in self._read_lot.unpark_all():
            hold = self._queued_readers.pop(task)
            hold.since = now
            self._grant_read(hold)

    def _admit_next_writer(self, now: float) -> None:
        (task,) = self._write_lot.unpark(count=1)
        hold = self._queued_writers.pop(task)
        hold.since = now
        self._grant_write(hold)

    def _drop_read(self, task: Task) -> None:
        holds = self._read_holds[task]
        holds.pop()
        if not holds:
            del self._read_holds[task]
        self._readers -= 1
        if self._readers == 0:
            if self._write_lot:
                self._admit_next_writer(trio.current_time())
            else:
                _HELD.discard(self)

    def _drop_write(self) -> None:
        self._writer = None
        now = trio.current_time()
        if self._read_lot:
            self._admit_queued_readers(now)
        elif self._write_lot:
            self._admit_next_writer(now)
        else:
            _HELD.discard(self)

    # -- readers -----------------------------------------------------------------

    def _can_read(self) -> bool:
        return self._writer is None and not self._write_lot

    # Public methods capture the caller's frame before entering a KI-protected method,
    # so that the protection's implementation can never shift ``stacklevel``.

    def acquire_read_nowait(self, *, stacklevel: int = 1) -> None:
        """Take a read hold without blocking; raises :class:`trio.WouldBlock`.

        ``stacklevel`` picks the frame recorded as the acquisition site, as in
        :func:`warnings.warn`: 1 is the caller, 2 the caller's caller.
        """
        self._acquire_read_nowait(_site(sys._getframe(stacklevel)))

    @enable_ki_protection
    def _acquire_read_nowait(self, site: _Site) -> None:
        if not self._can_read():
            raise trio.WouldBlock
        self._grant_read(_Hold("read", current_task(), site))

    async def acquire_read(self, *, stacklevel: int = 1) -> None:
        """Take a read hold, waiting while a writer holds the lock or is queued for it.

        ``stacklevel`` as in :meth:`acquire_read_nowait`.
        """
        # The coroutine's first step runs in the awaiting frame's stack, so the
        # caller is still sys._getframe(1) here.
        await self._acquire_read(_site(sys._getframe(stacklevel)))

    @enable_ki_protection
    async def _acquire_read(self, site: _Site) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        hold = _Hold("read", current_task(), site)
        if self._can_read():
            self._grant_read(hold)
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        self._queued_readers[hold.task] = hold
        try:
            await self._read_lot.park()
        except BaseException:
            # park() raises only if nobody unparked us, so we hold nothing; the
            # check guards the invariant should that ever change.
            if self._queued_readers.pop(hold.task, None) is None:
                self._drop_read(hold.task)
            raise

    @enable_ki_protection
    def release_read(self) -> None:
        """Release the calling task's most recent read hold.

        Raises:
          LockError: if the calling task holds no read lock on this lock.
        """
        task = current_task()
        if task not in self._read_holds:
            if self._writer is not None:
                state = f"it is write-locked by task {self._writer.task.name!r}"
            elif self._readers:
                state = f"it is read-held by {self._readers} other hold(s)"
            else:
                state = "it is not held"
            raise LockError(
                f"release_read of {self.name!r} by task {task.name!r}, which holds no read"
                f" lock on it ({state})"
            )
        self._drop_read(task)

    def read(self, *, stacklevel: int = 1) -> _ReadGuard:
        """``async with lock.read():`` holds the read lock for the block."""
        return _ReadGuard(self, _site(sys._getframe(stacklevel)))

    # -- writers -----------------------------------------------------------------

    def _check_not_holding(self, task: Task) -> None:
        # Each of these waits for itself forever; say so instead of hanging.
        if self._writer is not None and self._writer.task is task:
            raise LockError(f"task {task.name!r} already holds the write lock on {self.name!r}")
        if task in self._read_holds:
            raise LockError(
                f"task {task.name!r} holds a read lock on {self.name!r} and asks for the"
                " write lock: that would wait for itself forever"
            )

    def acquire_write_nowait(self, *, stacklevel: int = 1) -> None:
        """Take the write lock without blocking; raises :class:`trio.WouldBlock`.

        Raises:
          LockError: if the calling task already holds this lock (read or write).
        """
        self._acquire_write_nowait(_site(sys._getframe(stacklevel)))

    @enable_ki_protection
    def _acquire_write_nowait(self, site: _Site) -> None:
        task = current_task()
        self._check_not_holding(task)
        if self._writer is not None or self._readers or self._write_lot:
            raise trio.WouldBlock
        self._grant_write(_Hold("write", task, site))

    async def acquire_write(self, *, stacklevel: int = 1) -> None:
        """Take the write lock, waiting for every holder; new readers queue behind us.

        Raises:
          LockError: if the calling task already holds this lock (read or write).
        """
        await self._acquire_write(_site(sys._getframe(stacklevel)))

    @enable_ki_protection
    async def _acquire_write(self, site: _Site) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        task = current_task()
        self._check_not_holding(task)
        hold = _Hold("write", task, site)
        if self._writer is None and not self._readers and not self._write_lot:
            self._grant_write(hold)
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        self._queued_writers[task] = hold
        try:
            await self._write_lot.park()
        except BaseException:
            if self._queued_writers.pop(task, None) is None:
                self._drop_write()
            elif self._writer is None and not self._write_lot and self._read_lot:
                # We were the only thing keeping the readers parked behind us out.
                self._admit_queued_readers(trio.current_time())
            raise

    @enable_ki_protection
    def release_write(self) -> None:
        """Release the write lock held by the calling task.

        Raises:
          LockError: if the lock is not write-locked, or by another task.
        """
        task = current_task()
        if self._writer is None:
            raise LockError(f"release_write of {self.name!r}, which is not write-locked")
        if self._writer.task is not task:
            raise LockError(
                f"release_write of {self.name!r} by task {task.name!r}; it is write-locked"
                f" by task {self._writer.task.name!r}"
            )
        self._drop_write()

    def write(self, *, stacklevel: int = 1) -> _WriteGuard:
        """``async with lock.write():`` holds the write lock for the block."""
        return _WriteGuard(self, _site(sys._getframe(stacklevel)))

    # -- introspection -----------------------------------------------------------

    def locked(self) -> bool:
        """Whether anyone holds the lock, in either mode."""
        return self._writer is not None or self._readers > 0

    def statistics(self) -> RWLockStatistics:
        """A frozen copy of the lock's state, naming every holder."""
        read_holders = sorted(
            (hold.view(self.name) for holds in self._read_holds.values() for hold in holds),
            key=lambda holder: holder.serial,
        )
        waiting_since = min((hold.since for hold in self._queued_writers.values()), default=None)
        return RWLockStatistics(
            readers=self._readers,
            writer_held=self._writer is not None,
            writers_waiting=len(self._write_lot),
            readers_waiting=len(self._read_lot),
            writer_waiting_since=waiting_since,
            read_holders=tuple(read_holders),
            writer=None if self._writer is None else self._writer.view(self.name),
            write_grants=self._write_grants,
        )


class _ReadGuard:
    """Async context manager returned by :meth:`RWLock.read`; the site is fixed at creation."""

    __slots__ = ("_lock", "_site")

    def __init__(self, lock: RWLock, site: _Site) -> None:
        self._lock = lock
        self._site = site

    async def __aenter__(self) -> None:
        await self._lock._acquire_read(self._site)

    async def __aexit__(self, *exc_info: object) -> None:
        self._lock.release_read()


class _WriteGuard:
    """Async context manager returned by :meth:`RWLock.write`; the site is fixed at creation."""

    __slots__ = ("_lock", "_site")

    def __init__(self, lock: RWLock, site: _Site) -> None:
        self._lock = lock
        self._site = site

    async def __aenter__(self) -> None:
        await self._lock._acquire_write(self._site)

    async def __aexit__(self, *exc_info: object) -> None:
        self._lock.release_write()
