"""The reloader: owns every reload policy; sources only fetch, tables only install.

Invariants:

* A failure of any kind (source down, garbage, deadline, refused by the shrink
  guard) leaves the served table as it was.  We never install an empty table
  because a read came back empty or truncated.
* Validation of a big table yields to the event loop every few thousand keys,
  so queries keep being answered from the old table while the new one is built;
  installing it is O(1) in copy-on-write mode.
* One reload runs at a time; triggers that arrive meanwhile coalesce into one
  more reload.
* The cyclic garbage collector is kept off while a table is built and what
  was built is then frozen (``gc.freeze``): a table holds millions of objects
  that live until the next reload, and every full collection would walk them
  all, stalling answers for a third of a second per million names.  Tables
  hold no reference cycles (they are freed by reference counting); the price
  is that cyclic garbage other tasks create during a build is never collected,
  which is small and bounded by the number of reloads.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import logging
import math
import os
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import trio

from cowdns.errors import EntryError, ReloadRefused, SourceError
from cowdns.store.sources import Change, Fetched, Source, WatchableSource
from cowdns.store.table import Entry, TableBuilder, build_table, entry_to_json
from cowdns.store.zones import Zones

__all__ = ["ReloadResult", "Reloader", "Table", "load_state_file", "write_state_file"]

log = logging.getLogger("cowdns.reload")

Outcome = Literal["loaded", "unchanged", "failed", "refused"]

STATE_FORMAT = 1


class TableInfo(Protocol):
    @property
    def entries(self) -> Mapping[str, Entry]: ...

    @property
    def ancestors(self) -> Mapping[str, int]: ...

    @property
    def generation(self) -> int: ...

    @property
    def version(self) -> str: ...

    @property
    def loaded_at(self) -> float: ...


class Table(Protocol):
    """Where a reload is installed: the copy-on-write holder or the locked table."""

    @property
    def zones(self) -> Zones: ...

    def table(self) -> TableInfo:
        """The table as served now (the reloader's own, unlocked, read)."""
        ...

    async def install(self, builder: TableBuilder, version: str) -> int:
        """Replace the served table by ``builder``'s; returns the new generation."""
        ...


@dataclass(frozen=True, slots=True)
class ReloadResult:
    outcome: Outcome
    generation: int
    names: int
    version: str
    duration: float
    rejected: int = 0
    error: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "outcome": self.outcome,
            "generation": self.generation,
            "names": self.names,
            "version": self.version,
            "duration_seconds": round(self.duration, 6),
            "rejected": self.rejected,
            "error": self.error,
        }


def write_state_file(path: Path, entries: Mapping[str, Entry], version: str) -> None:
    """Write the last good table atomically (temp file + rename); blocking, run in a thread."""
    body = {
        "cowdns_state": STATE_FORMAT,
        "version": version,
        "saved_at": time.time(),
        "names": len(entries),  # before the table: readable without parsing it all
        "table": {key: entry_to_json(entry) for key, entry in entries.items()},
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(body, fh, separators=(",", ":"))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def state_file_names(path: Path) -> int | None:
    """How many names a state file holds, read from its head; None if unknown."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return None
    match = re.search(rb'"names":(\d+)', head)
    return int(match[1]) if match else None


def load_state_file(path: Path) -> Fetched:
    """Read a state file written by :func:`write_state_file`; raises SourceError."""
    try:
        with open(path, "rb") as fh:
            body = json.load(fh)
    except FileNotFoundError:
        raise SourceError(f"state file {path} does not exist") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise SourceError(f"state file {path} is unreadable: {exc}") from None
    if (
        not isinstance(body, dict)
        or body.get("cowdns_state") != STATE_FORMAT
        or not isinstance(body.get("table"), dict)
    ):
        raise SourceError(f"state file {path} is not a cowdns state file")
    return Fetched(body["table"], str(body.get("version", "state")))


def _load_malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to give back this way
        return None
    return trim


_MALLOC_TRIM = _load_malloc_trim()


def _give_back_memory() -> None:
    """Return the replaced table's freed memory to the system (glibc keeps it otherwise).

    Without this the process stays at two tables' size after the first reload,
    and the next reload peaks at three.  Runs in a worker thread: ctypes drops
    the GIL for the call.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic collection during a build; freeze what it made (see the module docstring)."""
    enabled = gc.isenabled()
    gc.collect(0)  # the young garbage of before goes now, not into the frozen set
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


class Reloader:
    """Keeps ``table`` fresh from ``source``: periodic, on demand, and pushed changes."""

    def __init__(
        self,
        source: Source,
        table: Table,
        *,
        interval: float = 300.0,
        jitter: float = 0.1,
        deadline: float = 60.0,
        max_shrink: float = 0.5,
        state_file: Path | None = None,
        checkpoint: Callable[[], Awaitable[None]] = trio.lowlevel.checkpoint,
        chunk: int = 100,
    ) -> None:
        self.source = source
        self.table = table
        self.interval = interval
        self.jitter = jitter
        self.deadline = deadline
        self.max_shrink = max_shrink
        self.state_file = state_file
        self.checkpoint = checkpoint
        self.chunk = chunk
        self.last_result: ReloadResult | None = None
        self.loaded = trio.Event()
        self.on_result: list[Callable[[ReloadResult], None]] = []
        self.on_rejected: list[Callable[[EntryError], None]] = []
        self._lock = trio.Lock()
        self._wakeup = trio.Event()
        self._failures = 0
        self._reported: set[tuple[str, str]] = set()
        self._phase = "waiting"
        self._state_names: int | None = None
        self._watch_scope: trio.CancelScope | None = None

    # -- triggers ---------------------------------------------------------------

    def trigger(self) -> None:
        """Ask the running reloader for a full reload now (SIGHUP, admin endpoint)."""
        self._wakeup.set()

    # -- one reload -------------------------------------------------------------

    async def reload(self, *, force: bool = False) -> ReloadResult:
        """Fetch and install the whole table now; the served table survives any failure.

        ``force`` re-reads an unchanged source and overrides the shrink guard.
        """
        started = time.monotonic()
        self._phase = "waiting"
        fetched: Fetched | None = None
        try:
            with trio.fail_after(self.deadline):
                async with self._lock:
                    if force:
                        self.source.forget_version()
                    self._phase = "fetching"
                    fetched = await self.source.fetch()
                    if fetched is None or (
                        not force and fetched.version == self.table.table().version
                    ):
                        result = self._result("unchanged", started)
                    else:
                        result = await self._install_full(fetched, started, force=force)
        except trio.TooSlowError:
            self.source.forget_version()
            result = self._result("failed", started, error=self._too_slow())
        except SourceError as exc:
            self.source.forget_version()
            result = self._result("failed", started, error=str(exc))
        except ReloadRefused as exc:
            self.source.forget_version()
            result = self._result("refused", started, error=str(exc))
        except Exception as exc:
            # Whatever a source or the data throws at us, the served table stays: that is
            # the promise.  The traceback goes to the log for whoever must fix the bug.
            log.exception("reload: internal error")
            self.source.forget_version()
            result = self._result("failed", started, error=f"internal error: {exc!r}")
        if result.outcome == "loaded":
            fetched = None  # the raw table too: the replaced table is already gone
            await trio.to_thread.run_sync(_give_back_memory)
        self._finish(result)
        return result

    def _too_slow(self) -> str:
        limit = f"{self.deadline:g}s (reload_deadline)"
        if self._phase == "waiting":
            return f"the reload before this one was still running after {limit}"
        if self._phase == "fetching":
            return f"{self.source.description}: no answer within {limit}"
        if self._phase == "building":
            return f"validating the new table took longer than {limit}"
        return (
            f"the new table could not be installed within {limit}: in locked mode this"
            " means the write lock was not granted (a reader holds it; see the lock watchdog)"
        )

    async def _build(self, fetched: Fetched) -> TableBuilder:
        """Validate a whole fetched table off to the side and report its bad keys."""
        self._phase = "building"
        with _collector_paused():
            builder = await build_table(
                self.table.zones, fetched.entries, self.checkpoint, chunk=self.chunk
            )
        for error in builder.rejected:
            self._report(error)  # before any guard refuses the table: they are often why
        return builder

    async def _install_full(self, fetched: Fetched, started: float, *, force: bool) -> ReloadResult:
        builder = await self._build(fetched)
        self._guard_shrink(len(builder.entries), force=force)
        result = await self._install(builder, fetched.version, started)
        if self._watch_scope is not None:
            # The watch follows the table it started from; this one replaced it.
            self._watch_scope.cancel()
        return result

    def _guard_shrink(self, new_size: int, *, force: bool) -> None:
        served = self.table.table()
        old_size = len(served.entries)
        what = "served"
        if served.generation == 0 and self._state_names:
            # Nothing served yet: the last good table (the state file) is the baseline, so
            # an empty store at start-up cannot wipe it.
            old_size, what = self._state_names, "in the last good table (state file)"
        if force or old_size == 0:
            return
        dropped = (old_size - new_size) / old_size
        if dropped > self.max_shrink:
            raise ReloadRefused(
                f"new table has {new_size} names, {dropped:.0%} fewer than the {old_size} {what}"
                f" (limit {self.max_shrink:.0%}); keeping the served table (force to override)"
            )

    async def _install(self, builder: TableBuilder, version: str, started: float) -> ReloadResult:
        self._phase = "installing"
        await self.table.install(builder, version)
        result = self._result("loaded", started, rejected=len(builder.rejected))
        if self.state_file is not None:
            await self._save_state()
        return result

    async def apply_changes(self, changes: Sequence[Change], version: str) -> None:
        """Install pushed single-key changes on a copy of the served table.

        Raises ReloadRefused when the changes would shrink the table past the
        shrink guard (say ``etcdctl del --prefix``): the watch stops, the served
        table stays, and full reloads take over (and refuse the same) until an
        operator forces one.
        """
        await self.apply(changes, version)

    async def apply(self, changes: Sequence[Change], version: str) -> ReloadResult:
        """Like :meth:`apply_changes`, returning the outcome."""
        async with self._lock:
            started = time.monotonic()
            served = self.table.table()
            if (
                version.isdigit()
                and served.version.isdigit()
                and int(version) <= int(served.version)
            ):
                # A full reload installed a newer revision while this batch waited for the lock.
                stale = self._result("unchanged", started)
                self._finish(stale)
                return stale
            builder = TableBuilder.from_table(self.table.zones, served.entries, served.ancestors)
            for count, change in enumerate(changes, 1):
                if change.value is None:
                    builder.delete(change.key)
                elif builder.put(change.key, change.value) is None:
                    # Rejected: drop the name, exactly as a full load of the store would.
                    builder.delete(change.key)
                if count % self.chunk == 0:
                    await self.checkpoint()
            for error in builder.rejected:
                self._report(error)
            try:
                self._guard_shrink(len(builder.entries), force=False)
            except ReloadRefused as exc:
                self._finish(self._result("refused", started, error=str(exc)))
                raise
            result = await self._install(builder, version, started)
            self._finish(result)
            return result

    async def _save_state(self) -> None:
        assert self.state_file is not None
        served = self.table.table()
        try:
            await trio.to_thread.run_sync(
                write_state_file, self.state_file, served.entries, served.version
            )
        except OSError as exc:
            log.error("cannot write state file %s: %s", self.state_file, exc)

    def _report(self, error: EntryError) -> None:
        # Each bad key is reported once, not at every reload.
        marker = (error.key, error.message)
        if marker in self._reported:
            return
        self._reported.add(marker)
        log.warning("rejected table entry %s", error)
        for hook in self.on_rejected:
            hook(error)

    def _result(
        self, outcome: Outcome, started: float, *, rejected: int = 0, error: str = ""
    ) -> ReloadResult:
        served = self.table.table()
        return ReloadResult(
            outcome,
            served.generation,
            len(served.entries),
            served.version,
            time.monotonic() - started,
            rejected,
            error,
        )

    def _finish(self, result: ReloadResult) -> None:
        self.last_result = result
        if result.outcome in ("loaded", "unchanged"):
            self._failures = 0
            if result.generation > 0:
                self.loaded.set()
        else:
            self._failures += 1
        if result.outcome == "loaded":
            log.info(
                "reload loaded generation=%d names=%d version=%s duration=%.3fs rejected=%d",
                result.generation,
                result.names,
                result.version,
                result.duration,
                result.rejected,
            )
        elif result.outcome == "unchanged":
            log.debug(
                "reload unchanged generation=%d version=%s", result.generation, result.version
            )
        else:
            log.error(
                "reload %s: %s; serving generation=%d names=%d",
                result.outcome,
                result.error,
                result.generation,
                result.names,
            )
        for hook in self.on_result:
            hook(result)

    # -- start-up and the schedule ----------------------------------------------

    async def load_initial(self) -> ReloadResult:
        """First load; when the store is unreachable, fall back to the state file."""
        if self.state_file is not None:
            self._state_names = await trio.to_thread.run_sync(state_file_names, self.state_file)
        result = await self.reload()
        if (
            result.outcome in ("failed", "refused")
            and self.state_file is not None
            and self.state_file.exists()
        ):
            try:
                fetched = await trio.to_thread.run_sync(load_state_file, self.state_file)
            except SourceError as exc:
                log.error("%s", exc)
                return result
            log.warning(
                "store %s; serving the last good table from %s (version %s)",
                "unreachable" if result.outcome == "failed" else "refused by the shrink guard",
                self.state_file,
                fetched.version,
            )
            async with self._lock:
                started = time.monotonic()
                builder = await self._build(fetched)
                self._phase = "installing"
                await self.table.install(builder, fetched.version)
                state_result = self._result("loaded", started, rejected=len(builder.rejected))
            self._finish(state_result)
            return state_result
        return result

    def next_delay(self) -> float:
        """Seconds until the next periodic reload: backoff after failures, always jittered."""
        base = self.interval
        if self._failures:
            base = min(self.interval, 1.0 * math.pow(2, self._failures - 1))
        return max(0.0, base * (1 + random.uniform(-self.jitter, self.jitter)))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load once, report started, then reload on schedule, trigger and push."""
        await self.load_initial()
        task_status.started()
        async with trio.open_nursery() as nursery:
            if isinstance(self.source, WatchableSource):
                nursery.start_soon(self._watch_loop)
            while True:
                with trio.move_on_after(self.next_delay()):
                    await self._wakeup.wait()
                self._wakeup = trio.Event()
                await self.reload()

    async def _watch_loop(self) -> None:
        source = self.source
        assert isinstance(source, WatchableSource)
        while True:
            await self.loaded.wait()
            since = self.table.table().version
            with trio.CancelScope() as self._watch_scope:
                try:
                    await source.watch(since, self.apply_changes)
                    log.warning("watch on %s ended; reloading in full", source.description)
                except SourceError as exc:
                    log.warning(
                        "watch on %s broke (%s); reloading in full", source.description, exc
                    )
                except ReloadRefused:
                    pass  # already logged by _finish; the full reload below decides again
                except Exception:
                    log.exception(
                        "watch on %s: internal error; reloading in full", source.description
                    )
            self._watch_scope = None
            if self.table.table().version != since:
                continue  # a full reload installed another version: watch from that one
            source.forget_version()
            result = await self.reload()
            if result.outcome != "loaded":
                await trio.sleep(self.next_delay())
