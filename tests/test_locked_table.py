"""The locked table: in-place chunked installs under the write lock, reads under the read lock."""

from __future__ import annotations

import sys
from collections.abc import Mapping

import dns.name
import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from cowdns.store.locked import LockedTable
from cowdns.store.reloader import Reloader, Table
from cowdns.store.snapshot import TableView
from cowdns.store.sources import Fetched
from cowdns.store.table import Entry, TableBuilder
from cowdns.store.zones import Soa, Zone, Zones

ORIGIN = dns.name.from_text("example.test.")


def make_zones() -> Zones:
    soa = Soa(
        mname=dns.name.from_text("ns1.example.test."),
        rname=dns.name.from_text("hostmaster.example.test."),
        serial=1,
        refresh=3600,
        retry=600,
        expire=86400,
        minimum=300,
        ttl=3600,
    )
    return Zones((Zone(ORIGIN, 300, (dns.name.from_text("ns1.example.test."),), soa),))


def builder_of(zones: Zones, raw: Mapping[str, object]) -> TableBuilder:
    builder = TableBuilder(zones)
    for key, value in raw.items():
        assert builder.put(key, value) is not None, key
    return builder


def numbered(count: int, prefix: str = "h") -> dict[str, object]:
    return {f"{prefix}{i}.a.example.test": [f"192.0.2.{i % 250 + 1}"] for i in range(count)}


class RecordingCheckpoint:
    """A checkpoint that records what the table and its lock look like at each call."""

    def __init__(self, table: LockedTable) -> None:
        self.table = table
        self.calls = 0
        self.writer_held: list[bool] = []
        self.sizes: list[int] = []
        self.pause_at: int | None = None
        self.paused = trio.Event()
        self.resume = trio.Event()

    async def __call__(self) -> None:
        self.calls += 1
        self.writer_held.append(self.table.lock.statistics().writer_held)
        self.sizes.append(len(self.table.entries))
        if self.calls == self.pause_at:
            self.paused.set()
            await self.resume.wait()
        await trio.lowlevel.checkpoint()


def test_locked_table_is_a_reloader_table_and_a_filter_view() -> None:
    # Checked by mypy: both protocols are satisfied by the one object.
    table = LockedTable(make_zones())
    as_table: Table = table
    as_view: TableView = table
    assert as_table.table().generation == as_view.generation == 0
    assert as_table.table().version == "empty"
    with pytest.raises(ValueError, match="chunk"):
        LockedTable(make_zones(), chunk=0)


async def test_install_updates_in_place_and_bumps_the_generation() -> None:
    zones = make_zones()
    table = LockedTable(zones)
    entries, ancestors = table.entries, table.ancestors
    generation = await table.install(
        builder_of(zones, {"www.example.test": ["192.0.2.1"], "x.y.example.test": ["::1"]}),
        "v1",
    )
    assert generation == 1
    assert (table.generation, table.version) == (1, "v1")
    assert table.lookup("www.example.test.") == Entry(("192.0.2.1",), ())
    assert table.has_descendants("y.example.test.")
    assert not table.has_descendants("www.example.test.")

    generation = await table.install(
        builder_of(zones, {"www.example.test": ["192.0.2.2"], "new.example.test": ["::2"]}),
        "v2",
    )
    assert generation == 2
    assert table.version == "v2"
    # Same dicts, updated in place: stale keys deleted, the rest set.
    assert table.entries is entries
    assert table.ancestors is ancestors
    assert set(entries) == {"www.example.test.", "new.example.test."}
    assert table.lookup("www.example.test.") == Entry(("192.0.2.2",), ())
    assert table.lookup("x.y.example.test.") is None
    assert not table.has_descendants("y.example.test.")
    assert not table.lock.locked()


async def test_install_works_in_chunks_under_the_write_lock() -> None:
    zones = make_zones()
    table = LockedTable(zones, chunk=10)
    recorder = RecordingCheckpoint(table)
    table.checkpoint = recorder
    await table.install(builder_of(zones, numbered(95, "old")), "v1")
    recorder.calls = 0
    recorder.writer_held.clear()
    recorder.sizes.clear()

    await table.install(builder_of(zones, numbered(95, "new")), "v2")
    # 95 stale keys deleted in 10 chunks, 95 new keys set (a checkpoint every 10), 1
    # ancestor ("a.example.test.") kept in 1 chunk, 1 set in none.
    assert recorder.calls == 10 + 9 + 1
    assert all(recorder.writer_held)
    # The entries dict shrinks chunk by chunk, then grows: it is never replaced.
    assert recorder.sizes[:3] == [85, 75, 65]
    assert recorder.sizes[9] == 0
    assert recorder.sizes[10] == 10
    assert len(table.entries) == 95
    assert not table.lock.locked()


async def test_readers_wait_for_the_whole_install() -> None:
    zones = make_zones()
    table = LockedTable(zones, chunk=10)
    await table.install(builder_of(zones, numbered(50, "old")), "v1")
    recorder = RecordingCheckpoint(table)
    recorder.pause_at = 2
    table.checkpoint = recorder
    seen: list[tuple[int, int]] = []

    async def query() -> None:
        async with table.reading() as view:
            seen.append((view.generation, len(table.entries)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(table.install, builder_of(zones, numbered(50, "new")), "v2")
        await recorder.paused.wait()
        # Half-way through the install: the table is half-updated in place ...
        assert len(table.entries) == 30
        nursery.start_soon(query)
        await wait_all_tasks_blocked()
        # ... and the query is parked, not reading it.
        assert seen == []
        assert table.lock.statistics().readers_waiting == 1
        recorder.resume.set()
    assert seen == [(2, 50)]


async def test_reading_records_the_callers_line() -> None:
    table = LockedTable(make_zones())
    line = sys._getframe().f_lineno + 1
    async with table.reading() as view:
        assert view is table
        (holder,) = table.lock.statistics().read_holders
    assert holder.site == f"{__file__}:{line}"
    assert holder.function == "test_reading_records_the_callers_line"
    assert not table.lock.locked()


async def test_reading_is_blocked_by_a_waiting_writer() -> None:
    """The failure locked mode exists to show: one leaked read hold stops every query."""
    zones = make_zones()
    table = LockedTable(zones)
    await table.lock.acquire_read()  # the leak
    answered: list[int] = []

    async def query() -> None:
        async with table.reading() as view:
            answered.append(view.generation)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(table.install, builder_of(zones, numbered(3)), "v1")
        await wait_all_tasks_blocked()
        nursery.start_soon(query)
        await wait_all_tasks_blocked()
        assert answered == []
        table.lock.release_read()
    assert answered == [1]


async def test_on_install_hooks_run_under_the_write_lock() -> None:
    zones = make_zones()
    table = LockedTable(zones)
    calls: list[tuple[int, bool]] = []
    table.on_install.append(
        lambda generation: calls.append((generation, table.lock.statistics().writer_held))
    )
    await table.install(builder_of(zones, numbered(3)), "v1")
    assert calls == [(1, True)]


class StaticSource:
    """A fake store holding one table."""

    description = "static"

    def __init__(self, entries: Mapping[str, object]) -> None:
        self.entries = entries

    async def fetch(self) -> Fetched | None:
        await trio.lowlevel.checkpoint()
        return Fetched(self.entries, "static-1")

    def forget_version(self) -> None:
        pass

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def test_the_reloader_installs_into_a_locked_table() -> None:
    zones = make_zones()
    table = LockedTable(zones)
    reloader = Reloader(StaticSource(numbered(5)), table)
    result = await reloader.reload()
    assert (result.outcome, result.generation, result.names) == ("loaded", 1, 5)
    assert table.version == "static-1"
    async with table.reading() as view:
        assert view.lookup("h3.a.example.test.") is not None
        assert view.has_descendants("a.example.test.")
