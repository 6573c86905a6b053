"""Sources do I/O only: fetch a raw table and say which version it is.

Parsing and validation live in :mod:`cowdns.store.table`; policy (schedule,
deadline, keep-last-good) lives in :mod:`cowdns.store.reloader`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["Change", "Fetched", "Source", "WatchableSource"]


@dataclass(frozen=True, slots=True)
class Fetched:
    """A whole raw table: ``{store key: JSON value}`` and the source's version of it."""

    entries: Mapping[str, object]
    version: str


@dataclass(frozen=True, slots=True)
class Change:
    """One pushed change: a put (``value`` set) or a delete (``value`` is None)."""

    key: str
    value: object | None


class Source(Protocol):
    """A store the reloader can read in full."""

    @property
    def description(self) -> str:
        """Where the table comes from, for logs (never contains credentials)."""
        ...

    async def fetch(self) -> Fetched | None:
        """Read the whole table; None when it is unchanged since the last fetch.

        Raises :class:`~cowdns.errors.SourceError` when the store cannot deliver.
        """
        ...

    def forget_version(self) -> None:
        """Make the next :meth:`fetch` return the table even if it is unchanged."""
        ...

    async def aclose(self) -> None: ...


OnChanges = Callable[[Sequence[Change], str], Awaitable[None]]


@runtime_checkable
class WatchableSource(Source, Protocol):
    """A store that can also push changes after a full read."""

    async def watch(self, since: str, on_changes: OnChanges) -> None:
        """Deliver changes after version ``since`` until cancelled.

        Returns or raises SourceError when the watch cannot continue (compacted
        revision, broken stream); the reloader then falls back to a full fetch.
        """
        ...
