"""Copy-on-write table: immutable snapshots and the one reference that publishes them.

Invariant: a :class:`Snapshot` never changes after construction; the only shared
mutable state is :attr:`SnapshotHolder.current`, and only the reloader assigns
it, in one statement with no ``await`` around it.  A query reads ``current``
once and uses that snapshot to the end, so it never sees half a reload and never
takes a lock; nothing a reader forgets can block the reloader or other readers.

Rejected: a read/write lock (see :mod:`cowdns.store.locked` for why), and
per-entry atomic updates (a query could see a table that never existed).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from cowdns.store.table import Entry, TableBuilder
from cowdns.store.zones import Zones

__all__ = ["Snapshot", "SnapshotHolder", "TableView", "freeze"]


class TableView(Protocol):
    """What filters may read: one consistent table for one query."""

    @property
    def zones(self) -> Zones: ...

    @property
    def generation(self) -> int: ...

    def lookup(self, key: str) -> Entry | None:
        """The entry of a canonical name key, or None."""
        ...

    def has_descendants(self, key: str) -> bool:
        """Whether table names exist below ``key`` (an empty non-terminal if no entry)."""
        ...


@dataclass(frozen=True, slots=True, eq=False)
class Snapshot:
    """One published IP table; deeply immutable."""

    zones: Zones
    entries: Mapping[str, Entry]
    ancestors: Mapping[str, int]
    generation: int
    version: str
    loaded_at: float = field(default_factory=time.time)

    def lookup(self, key: str) -> Entry | None:
        return self.entries.get(key)

    def has_descendants(self, key: str) -> bool:
        return key in self.ancestors

    def __len__(self) -> int:
        return len(self.entries)


def freeze(builder: TableBuilder, generation: int, version: str) -> Snapshot:
    """Turn a finished builder into a snapshot, O(1): the builder must not be used again."""
    return Snapshot(
        builder.zones,
        MappingProxyType(builder.entries),
        MappingProxyType(builder.ancestors),
        generation,
        version,
    )


class SnapshotHolder:
    """Holds the current snapshot; readers read :attr:`current`, the reloader publishes."""

    __slots__ = ("current",)

    def __init__(self, initial: Snapshot) -> None:
        self.current = initial

    @classmethod
    def empty(cls, zones: Zones) -> SnapshotHolder:
        return cls(Snapshot(zones, MappingProxyType({}), MappingProxyType({}), 0, "empty"))

    def publish(self, snapshot: Snapshot) -> None:
        self.current = snapshot

    # The reloader's side (see cowdns.store.reloader.Table).

    @property
    def zones(self) -> Zones:
        return self.current.zones

    def table(self) -> Snapshot:
        return self.current

    async def install(self, builder: TableBuilder, version: str) -> int:
        """Freeze ``builder`` and publish it: one assignment, readers never wait."""
        snapshot = freeze(builder, self.current.generation + 1, version)
        self.publish(snapshot)
        return snapshot.generation
