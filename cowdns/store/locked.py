"""Locked mode: one mutable IP table guarded by a Go-style read/write lock.

This is the design copy-on-write mode replaces, kept for side-by-side
comparison and to reproduce its failure on demand.  Invariant: every query
reads the table only between ``acquire_read`` and ``release_read``; the
reloader changes it only under the write lock, in place, in chunks with a
checkpoint between them, exactly like the original reloader.

Why copy-on-write replaced it: a reader that forgets to release its read hold
costs nothing until the next reload asks for the write lock; the waiting writer
then blocks every new reader and the server stops answering.  And because the
update is in place, readers cannot be answered during an install at all: the
chunk checkpoints only keep tasks that do not touch the table (admin, the
watchdog, accepting connections) alive.

Rejected: building a new dict and swapping it under the write lock -- that is
half of copy-on-write, and this mode exists to show the original behaviour.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TypeVar

import trio

from cowdns.store.rwlock import RWLock
from cowdns.store.table import Entry, TableBuilder
from cowdns.store.zones import Zones

__all__ = ["LockedTable"]

_V = TypeVar("_V")


class LockedTable:
    """The locked table: the reloader's ``Table`` and the filters' ``TableView`` in one.

    The view methods (:meth:`lookup`, :meth:`has_descendants`, :attr:`generation`)
    do not lock: the caller must hold the read lock, normally through
    ``async with table.reading() as view:``.  :meth:`table` is the reloader's own
    unlocked read, safe because only the reloader ever writes.
    """

    def __init__(
        self,
        zones: Zones,
        *,
        lock: RWLock | None = None,
        chunk: int = 100,
        checkpoint: Callable[[], Awaitable[None]] = trio.lowlevel.checkpoint,
    ) -> None:
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, not {chunk!r}")
        self._zones = zones
        self.lock = RWLock("table") if lock is None else lock
        self.chunk = chunk
        self.checkpoint = checkpoint
        self.entries: dict[str, Entry] = {}
        self.ancestors: dict[str, int] = {}
        self.generation = 0
        self.version = "empty"
        self.loaded_at = time.time()
        self.on_install: list[Callable[[int], None]] = []
        """Called with the new generation while the write lock is still held (cache flush)."""

    # -- TableView (caller holds the read lock) ---------------------------------

    @property
    def zones(self) -> Zones:
        """The configured zones (static; no lock needed)."""
        return self._zones

    def lookup(self, key: str) -> Entry | None:
        """The entry of a canonical name key, or None; caller holds the read lock."""
        return self.entries.get(key)

    def has_descendants(self, key: str) -> bool:
        """Whether table names exist below ``key``; caller holds the read lock."""
        return key in self.ancestors

    def __len__(self) -> int:
        return len(self.entries)

    def reading(self) -> _Reading:
        """``async with table.reading() as view:`` -- the read lock for one query.

        The lock records the line that called ``reading()`` as the acquisition site.
        """
        return _Reading(self, self.lock.read(stacklevel=2))

    # -- Table (the reloader's side) ---------------------------------------------

    def table(self) -> LockedTable:
        """The table as served now; for the reloader only (it is the only writer)."""
        return self

    async def install(self, builder: TableBuilder, version: str) -> int:
        """Update the served table in place to ``builder``'s, under the write lock.

        Keys missing from the new table are deleted and the rest set, ``chunk``
        keys at a time with a checkpoint between chunks; readers wait for the
        whole install.  Returns the new generation.
        """
        async with self.lock.write():
            # Once the lock is ours the update must finish: a deadline or shutdown
            # cancelling it halfway would leave readers a table that never existed.
            with trio.CancelScope(shield=True):
                await self._replace(self.entries, builder.entries)
                await self._replace(self.ancestors, builder.ancestors)
                self.generation += 1
                self.version = version
                self.loaded_at = time.time()
                for hook in self.on_install:
                    hook(self.generation)
        return self.generation

    async def _replace(self, target: dict[str, _V], source: Mapping[str, _V]) -> None:
        # A snapshot of the keys: deleting from a dict while iterating it is an error.
        keys = list(target)
        for start in range(0, len(keys), self.chunk):
            for key in keys[start : start + self.chunk]:
                if key not in source:
                    del target[key]
            await self.checkpoint()
        for done, (key, value) in enumerate(source.items(), 1):
            target[key] = value
            if done % self.chunk == 0:
                await self.checkpoint()


class _Reading:
    """Async context manager of :meth:`LockedTable.reading`; yields the table as its view."""

    __slots__ = ("_guard", "_table")

    def __init__(self, table: LockedTable, guard: AbstractAsyncContextManager[None]) -> None:
        self._table = table
        self._guard = guard

    async def __aenter__(self) -> LockedTable:
        await self._guard.__aenter__()
        return self._table

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._guard.__aexit__(exc_type, exc, tb)
