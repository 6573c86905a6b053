"""The reloader's policies, against an in-memory source: keep-last-good, deadline,
shrink guard, reporting bad keys once, the state file, backoff and jitter,
pushed changes, and the schedule."""

from __future__ import annotations

import json
import logging
import math
import os
import random
from collections.abc import Iterator, Mapping
from dataclasses import FrozenInstanceError
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from cowdns.config import parse_config
from cowdns.errors import SourceError
from cowdns.store.reloader import Reloader, ReloadResult, load_state_file
from cowdns.store.snapshot import SnapshotHolder
from cowdns.store.sources import Change, Fetched
from cowdns.store.table import Entry
from tests.helpers import TABLE

ZONES = parse_config(
    {"zone": [{"origin": "example.com"}, {"origin": "example.net"}]}, Path("/")
).zones

# TABLE has 11 valid names and two bad keys.
GOOD_NAMES = 11
TEN = {f"h{i}.example.com": [f"192.0.2.{i + 1}"] for i in range(10)}


class FakeSource:
    """An in-memory store: serves ``entries`` at ``version``, or fails, or never answers."""

    def __init__(self, entries: Mapping[str, object], version: str = "v1") -> None:
        self.entries: dict[str, object] = dict(entries)
        self.version = version
        self.error: SourceError | None = None
        self.hang = False
        self.fetches: list[float] = []
        self._delivered: str | None = None

    @property
    def description(self) -> str:
        return "fake:memory"

    def change(self, entries: Mapping[str, object], version: str) -> None:
        self.entries = dict(entries)
        self.version = version

    async def fetch(self) -> Fetched | None:
        self.fetches.append(trio.current_time())
        await trio.lowlevel.checkpoint()
        if self.hang:
            await trio.sleep_forever()
        if self.error is not None:
            raise self.error
        if self.version == self._delivered:
            return None
        self._delivered = self.version
        return Fetched(dict(self.entries), self.version)

    def forget_version(self) -> None:
        self._delivered = None

    async def aclose(self) -> None:
        return None


def make(
    entries: Mapping[str, object] = TABLE, **kwargs: Any
) -> tuple[FakeSource, SnapshotHolder, Reloader]:
    source = FakeSource(entries)
    holder = SnapshotHolder.empty(ZONES)
    return source, holder, Reloader(source, holder, **kwargs)


def results_of(reloader: Reloader) -> trio.MemoryReceiveChannel[ReloadResult]:
    send, receive = trio.open_memory_channel[ReloadResult](math.inf)
    reloader.on_result.append(send.send_nowait)
    return receive


def rejected_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "cowdns.reload" and "rejected table entry" in record.getMessage()
    ]


# -- one reload -------------------------------------------------------------------


async def test_reload_loads_and_publishes_a_new_generation() -> None:
    _source, holder, reloader = make()
    assert holder.current.generation == 0
    result = await reloader.reload()
    assert (result.outcome, result.generation, result.names, result.version) == (
        "loaded",
        1,
        GOOD_NAMES,
        "v1",
    )
    assert result.rejected == 2
    assert reloader.loaded.is_set()
    assert reloader.last_result == result
    snapshot = holder.current
    assert (snapshot.generation, snapshot.version, len(snapshot)) == (1, "v1", GOOD_NAMES)
    assert snapshot.lookup("www.example.com.") == Entry(("192.0.2.10",), ("2001:db8::10",))
    assert snapshot.lookup("api.example.com.") == Entry(("192.0.2.20", "192.0.2.21"), (), 60)
    assert snapshot.has_descendants("lab.example.com.")
    assert snapshot.lookup("bad-address.example.com.") is None


async def test_unchanged_source_keeps_the_snapshot() -> None:
    _source, holder, reloader = make()
    await reloader.reload()
    before = holder.current
    result = await reloader.reload()
    assert (result.outcome, result.generation) == ("unchanged", 1)
    assert holder.current is before


async def test_force_rereads_an_unchanged_source() -> None:
    _source, holder, reloader = make()
    await reloader.reload()
    result = await reloader.reload(force=True)
    assert (result.outcome, result.generation) == ("loaded", 2)
    assert holder.current.generation == 2


async def test_source_error_keeps_the_last_good_table() -> None:
    source, holder, reloader = make()
    await reloader.reload()
    before = holder.current
    source.change({**TABLE, "www.example.com": ["192.0.2.99"]}, "v2")
    source.error = SourceError("fake:memory: connection refused")
    result = await reloader.reload()
    assert result.outcome == "failed"
    assert "connection refused" in result.error
    assert (result.generation, result.names, result.version) == (1, GOOD_NAMES, "v1")
    assert holder.current is before

    source.error = None
    result = await reloader.reload()
    assert (result.outcome, result.generation, result.version) == ("loaded", 2, "v2")
    assert holder.current.lookup("www.example.com.") == Entry(("192.0.2.99",), ())


async def test_a_fetch_that_never_answers_hits_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    source, holder, reloader = make(deadline=7.0)
    await reloader.reload()
    before = holder.current
    source.change(TEN, "v2")
    source.hang = True
    started = trio.current_time()
    result = await reloader.reload()
    assert trio.current_time() - started == pytest.approx(7.0)
    assert result.outcome == "failed"
    assert "fake:memory" in result.error and "7s" in result.error
    assert holder.current is before

    # The store comes back: the next reload reads it even though nothing changed.
    source.hang = False
    result = await reloader.reload()
    assert (result.outcome, result.generation, result.version) == ("loaded", 2, "v2")


async def test_a_failure_before_the_first_load_leaves_an_empty_unloaded_table() -> None:
    source, holder, reloader = make()
    source.error = SourceError("fake:memory: down")
    result = await reloader.reload()
    assert (result.outcome, result.generation) == ("failed", 0)
    assert not reloader.loaded.is_set()
    assert len(holder.current) == 0


# -- the shrink guard -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kept", "outcome"),
    [
        pytest.param(10, "loaded", id="same-size"),
        pytest.param(5, "loaded", id="drops-exactly-half"),
        pytest.param(4, "refused", id="drops-60-percent"),
        pytest.param(0, "refused", id="empty-read"),
    ],
)
async def test_shrink_guard(kept: int, outcome: str) -> None:
    source, holder, reloader = make(TEN, max_shrink=0.5)
    await reloader.reload()
    before = holder.current
    source.change(dict(list(TEN.items())[:kept]), "v2")
    result = await reloader.reload()
    assert result.outcome == outcome
    if outcome == "refused":
        assert holder.current is before
        assert (result.generation, result.names) == (1, 10)
        assert f"{kept} names" in result.error and "limit 50%" in result.error
    else:
        assert (holder.current.generation, len(holder.current)) == (2, kept)


async def test_shrink_guard_counts_rejected_keys_as_dropped() -> None:
    source, holder, reloader = make(TEN, max_shrink=0.5)
    await reloader.reload()
    # A bulk edit that broke every address: nothing valid is left.
    source.change({key: ["192.0.2.300"] for key in TEN}, "v2")
    result = await reloader.reload()
    assert result.outcome == "refused"
    assert len(holder.current) == 10


async def test_a_refused_table_still_reports_why_its_keys_were_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source, _holder, reloader = make(TEN)
    await reloader.reload()
    source.change({key: ["192.0.2.300"] for key in TEN}, "v2")
    assert (await reloader.reload()).outcome == "refused"
    # The operator must learn which keys were bad, or the refusal cannot be fixed.
    assert len(rejected_lines(caplog)) == 10


async def test_a_refused_table_stays_refused_until_forced() -> None:
    source, holder, reloader = make(TEN)
    await reloader.reload()
    source.change({}, "v2")
    assert (await reloader.reload()).outcome == "refused"
    # Not mistaken for "unchanged" on the next try: it is read and refused again.
    assert (await reloader.reload()).outcome == "refused"
    result = await reloader.reload(force=True)
    assert (result.outcome, result.generation, result.names) == ("loaded", 2, 0)
    assert len(holder.current) == 0


# -- rejected keys ----------------------------------------------------------------


async def test_each_rejected_key_is_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cowdns.reload")
    source, _holder, reloader = make()
    hooked: list[str] = []
    reloader.on_rejected.append(lambda error: hooked.append(error.key))

    result = await reloader.reload()
    assert result.rejected == 2
    lines = rejected_lines(caplog)
    assert len(lines) == 2
    assert any("'bad-address.example.com'" in line and "192.0.2.300" in line for line in lines)
    assert any("'www.example.org'" in line and "outside" in line for line in lines)
    assert sorted(hooked) == ["bad-address.example.com", "www.example.org"]

    # The same bad keys in the next table version: not reported again.
    caplog.clear()
    table = dict(TABLE)
    table["new.example.com"] = ["192.0.2.77"]
    source.change(table, "v2")
    result = await reloader.reload()
    assert (result.outcome, result.generation) == ("loaded", 2)
    assert rejected_lines(caplog) == []
    assert len(hooked) == 2

    # A new bad key is reported.
    table["worse.example.com"] = {"ips": ["192.0.2.1"], "ttl": -5}
    source.change(table, "v3")
    await reloader.reload()
    [line] = rejected_lines(caplog)
    assert "'worse.example.com'" in line and "ttl" in line


# -- the state file ---------------------------------------------------------------


async def test_state_file_is_written_after_a_load(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    source, holder, reloader = make(state_file=state)
    await reloader.reload()
    saved = load_state_file(state)
    assert saved.version == "v1"
    assert set(saved.entries) == set(holder.current.entries)
    assert saved.entries["api.example.com."] == {"ips": ["192.0.2.20", "192.0.2.21"], "ttl": 60}

    source.change({**TABLE, "www.example.com": ["192.0.2.99"]}, "v2")
    await reloader.reload()
    saved = load_state_file(state)
    assert saved.version == "v2"
    assert saved.entries["www.example.com."] == ["192.0.2.99"]
    assert os.listdir(tmp_path) == ["state.json"]  # no temp files left


async def test_state_file_serves_when_the_store_is_down_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state.json"
    _source, first, reloader = make(state_file=state)
    await reloader.reload()

    # A restart while the store is unreachable.
    source, holder, restarted = make(state_file=state)
    source.error = SourceError("fake:memory: connection refused")
    result = await restarted.load_initial()
    assert (result.outcome, result.generation, result.version) == ("loaded", 1, "v1")
    assert restarted.loaded.is_set()
    assert dict(holder.current.entries) == dict(first.current.entries)
    assert dict(holder.current.ancestors) == dict(first.current.ancestors)
    assert any("store unreachable" in r.getMessage() for r in caplog.records)

    # The store comes back: the next reload replaces the state-file table.
    source.error = None
    source.change(TEN, "v2")
    result = await restarted.reload(force=True)
    assert (result.outcome, result.generation, result.version) == ("loaded", 2, "v2")


async def test_load_initial_without_a_state_file_reports_the_failure(tmp_path: Path) -> None:
    source, holder, reloader = make(state_file=tmp_path / "state.json")
    source.error = SourceError("fake:memory: down")
    result = await reloader.load_initial()
    assert (result.outcome, result.generation) == ("failed", 0)
    assert len(holder.current) == 0


@pytest.mark.parametrize(
    ("body", "words"),
    [
        pytest.param('{"cowdns_state": 1, "table": {', "unreadable", id="truncated-json"),
        pytest.param("\xff\xfe", "unreadable", id="not-utf8"),
        pytest.param(json.dumps(TABLE), "not a cowdns state file", id="a-table-not-a-state"),
        pytest.param(
            json.dumps({"cowdns_state": 99, "table": {}}),
            "not a cowdns state file",
            id="unknown-format",
        ),
        pytest.param("[]", "not a cowdns state file", id="a-list"),
    ],
)
async def test_a_corrupt_state_file_is_reported_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, body: str, words: str
) -> None:
    state = tmp_path / "state.json"
    state.write_text(body, encoding="latin-1")
    source, holder, reloader = make(state_file=state)
    source.error = SourceError("fake:memory: down")
    result = await reloader.load_initial()
    assert (result.outcome, result.generation) == ("failed", 0)
    assert len(holder.current) == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(str(state) in line and words in line for line in errors), errors

    # The store comes back and is served; the state file is rewritten.
    source.error = None
    assert (await reloader.reload()).outcome == "loaded"
    assert load_state_file(state).version == "v1"


async def test_an_unwritable_state_file_does_not_fail_the_reload(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "no-such-folder" / "state.json"
    _source, holder, reloader = make(state_file=state)
    result = await reloader.reload()
    assert (result.outcome, holder.current.generation) == ("loaded", 1)
    assert any(
        "cannot write state file" in r.getMessage() and r.levelno == logging.ERROR
        for r in caplog.records
    )


# -- backoff and jitter -----------------------------------------------------------


@pytest.fixture
def seeded() -> Iterator[None]:
    state = random.getstate()
    random.seed(20240101)
    yield
    random.setstate(state)


async def test_next_delay_backs_off_after_failures_up_to_the_interval() -> None:
    source, _holder, reloader = make(interval=10.0, jitter=0.0)
    assert reloader.next_delay() == 10.0
    source.error = SourceError("fake:memory: down")
    delays = []
    for _ in range(6):
        await reloader.reload()
        delays.append(reloader.next_delay())
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]

    source.error = None
    await reloader.reload()
    assert reloader.next_delay() == 10.0


async def test_a_refused_table_backs_off_too() -> None:
    source, _holder, reloader = make(TEN, interval=10.0, jitter=0.0)
    await reloader.reload()
    source.change({}, "v2")
    await reloader.reload()
    await reloader.reload()
    assert reloader.next_delay() == 2.0


@pytest.mark.usefixtures("seeded")
@pytest.mark.parametrize(
    ("failures", "base"),
    [pytest.param(0, 100.0, id="interval"), pytest.param(3, 4.0, id="backoff")],
)
async def test_next_delay_jitters_within_bounds(failures: int, base: float) -> None:
    source, _holder, reloader = make(interval=100.0, jitter=0.2)
    source.error = SourceError("fake:memory: down")
    for _ in range(failures):
        await reloader.reload()
    delays = [reloader.next_delay() for _ in range(500)]
    assert all(base * 0.8 <= delay <= base * 1.2 for delay in delays)
    # Spread over the whole window, not a constant.
    assert min(delays) < base * 0.85 and max(delays) > base * 1.15


# -- pushed changes and immutability ----------------------------------------------


async def test_apply_changes_publishes_a_copy_and_leaves_the_old_snapshot_alone() -> None:
    _source, holder, reloader = make()
    await reloader.reload()
    old = holder.current
    old_entries, old_ancestors = dict(old.entries), dict(old.ancestors)

    await reloader.apply_changes(
        [
            Change("new.deep.example.com", ["192.0.2.77"]),
            Change("www.example.com", {"ips": ["2001:db8::99"], "ttl": 30}),
            Change("host1.lab.example.com", None),
            Change("bad.example.com", ["nope"]),
        ],
        "rev-7",
    )
    new = holder.current
    assert new is not old
    assert (new.generation, new.version) == (2, "rev-7")
    assert new.lookup("new.deep.example.com.") == Entry(("192.0.2.77",), ())
    assert new.lookup("www.example.com.") == Entry((), ("2001:db8::99",), 30)
    assert new.lookup("host1.lab.example.com.") is None
    assert new.lookup("bad.example.com.") is None
    assert new.has_descendants("deep.example.com.")
    assert not new.has_descendants("lab.example.com.")

    # The old snapshot, which queries in flight may still hold, is exactly as it was.
    assert old.generation == 1
    assert dict(old.entries) == old_entries
    assert dict(old.ancestors) == old_ancestors
    assert old.lookup("new.deep.example.com.") is None
    assert old.has_descendants("lab.example.com.")


async def test_apply_returns_the_outcome_and_reports_bad_keys(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _source, _holder, reloader = make(TEN)
    await reloader.reload()
    result = await reloader.apply([Change("x.example.com", [5])], "rev-2")
    assert (result.outcome, result.generation, result.names, result.rejected) == (
        "loaded",
        2,
        10,
        1,
    )
    assert rejected_lines(caplog) == [
        "rejected table entry 'x.example.com': address 5 is not a string"
    ]


async def test_snapshot_cannot_be_mutated() -> None:
    _source, holder, reloader = make()
    await reloader.reload()
    snapshot: Any = holder.current
    with pytest.raises(TypeError):
        snapshot.entries["evil.example.com."] = Entry(("192.0.2.66",), ())
    with pytest.raises(TypeError):
        del snapshot.entries["www.example.com."]
    with pytest.raises(TypeError):
        snapshot.ancestors["lab.example.com."] = 0
    with pytest.raises(FrozenInstanceError):
        snapshot.generation = 99
    entry: Any = snapshot.lookup("www.example.com.")
    with pytest.raises(FrozenInstanceError):
        entry.v4 = ("192.0.2.66",)
    assert isinstance(entry.v4, tuple) and isinstance(entry.v6, tuple)
    assert snapshot.lookup("evil.example.com.") is None


# -- run(): the schedule ----------------------------------------------------------


async def test_run_loads_before_reporting_started(autojump_clock: trio.testing.MockClock) -> None:
    _source, holder, reloader = make(interval=3600.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(reloader.run)
        assert holder.current.generation == 1
        nursery.cancel_scope.cancel()


async def test_trigger_reloads_now(autojump_clock: trio.testing.MockClock) -> None:
    source, holder, reloader = make(interval=3600.0, jitter=0.0)
    results = results_of(reloader)
    async with trio.open_nursery() as nursery:
        await nursery.start(reloader.run)
        assert (await results.receive()).generation == 1
        started = trio.current_time()

        source.change(TEN, "v2")
        source.change(TEN, "v3")
        # Several triggers before the reloader runs again coalesce into one reload.
        reloader.trigger()
        reloader.trigger()
        result = await results.receive()
        assert (result.outcome, result.generation, result.version) == ("loaded", 2, "v3")
        assert trio.current_time() - started < 1.0
        assert holder.current.version == "v3"

        with trio.move_on_after(3000):
            extra = await results.receive()
            pytest.fail(f"unexpected reload: {extra}")
        nursery.cancel_scope.cancel()


async def test_periodic_reload_every_interval(autojump_clock: trio.testing.MockClock) -> None:
    source, _holder, reloader = make(interval=300.0, jitter=0.0)
    results = results_of(reloader)
    async with trio.open_nursery() as nursery:
        await nursery.start(reloader.run)
        await results.receive()
        source.change(TEN, "v2")
        result = await results.receive()
        assert (result.outcome, result.version) == ("loaded", "v2")
        assert (await results.receive()).outcome == "unchanged"
        nursery.cancel_scope.cancel()
    assert [round(t) for t in source.fetches] == [0, 300, 600]


async def test_failed_reloads_retry_with_backoff(autojump_clock: trio.testing.MockClock) -> None:
    source, holder, reloader = make(interval=300.0, jitter=0.0)
    results = results_of(reloader)
    async with trio.open_nursery() as nursery:
        await nursery.start(reloader.run)
        await results.receive()
        source.error = SourceError("fake:memory: down")
        for _ in range(4):
            assert (await results.receive()).outcome == "failed"
        source.error = None
        source.change(TEN, "v2")
        assert (await results.receive()).outcome == "loaded"
        nursery.cancel_scope.cancel()
    # 300: the first failure; then 1, 2, 4 s apart; then 8 s later it works again.
    assert [round(t) for t in source.fetches] == [0, 300, 301, 303, 307, 315]
    assert holder.current.version == "v2"


async def test_run_survives_a_failing_store_and_a_corrupt_state_file(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    state = tmp_path / "state.json"
    state.write_text("{garbage")
    source, holder, reloader = make(interval=300.0, jitter=0.0, state_file=state)
    source.error = SourceError("fake:memory: down")
    results = results_of(reloader)
    async with trio.open_nursery() as nursery:
        await nursery.start(reloader.run)
        assert (await results.receive()).outcome == "failed"
        assert holder.current.generation == 0
        source.error = None
        result = await results.receive()
        assert (result.outcome, result.generation) == ("loaded", 1)
        nursery.cancel_scope.cancel()


async def test_a_watch_batch_older_than_the_served_revision_is_skipped() -> None:
    # A full reload installed revision 20 while a watch batch of revision 15 waited.
    source, holder, reloader = make({"www.example.com": ["192.0.2.10"]})
    source.version = "20"
    assert (await reloader.reload()).outcome == "loaded"
    stale = await reloader.apply([Change("www.example.com", ["192.0.2.99"])], "15")
    assert stale.outcome == "unchanged"
    entry = holder.current.lookup("www.example.com.")
    assert entry is not None and entry.v4 == ("192.0.2.10",)
    fresh = await reloader.apply([Change("www.example.com", ["192.0.2.99"])], "21")
    assert fresh.outcome == "loaded"
    entry = holder.current.lookup("www.example.com.")
    assert entry is not None and entry.v4 == ("192.0.2.99",)


async def test_pushed_deletes_that_would_empty_the_table_are_refused() -> None:
    from cowdns.errors import ReloadRefused

    _source, holder, reloader = make(TEN)
    assert (await reloader.reload()).outcome == "loaded"
    wipe = [Change(name, None) for name in list(TEN)[:8]]
    with pytest.raises(ReloadRefused):
        await reloader.apply_changes(wipe, "v2")
    assert len(holder.current) == 10 and reloader.last_result is not None
    assert reloader.last_result.outcome == "refused"
    # A small delete still goes through.
    await reloader.apply_changes(wipe[:2], "v3")
    assert len(holder.current) == 8


class FakeWatchable(FakeSource):
    """A FakeSource that can also watch: records where each watch starts."""

    def __init__(self, entries: Mapping[str, object], version: str) -> None:
        super().__init__(entries, version)
        self.watches: trio.MemorySendChannel[str]
        self.watches, self.started = trio.open_memory_channel[str](10)

    async def watch(self, since: str, on_changes: Any) -> None:
        await self.watches.send(since)
        await trio.sleep_forever()


async def test_a_full_reload_restarts_the_watch_from_the_new_version() -> None:
    source = FakeWatchable(TEN, "62")
    holder = SnapshotHolder.empty(ZONES)
    reloader = Reloader(source, holder, interval=3600)
    async with trio.open_nursery() as nursery:
        await nursery.start(reloader.run)
        with trio.fail_after(5):
            assert await source.started.receive() == "62"
            # The store was recreated: same names, a lower revision.
            source.change(TEN, "2")
            assert (await reloader.reload()).outcome == "loaded"
            assert await source.started.receive() == "2"
        nursery.cancel_scope.cancel()


async def test_an_empty_store_at_start_up_does_not_wipe_the_state_file(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    _source, _holder, first = make(TEN, state_file=state)
    assert (await first.reload()).outcome == "loaded"
    assert json.loads(state.read_text())["names"] == 10

    _source, holder, second = make({}, state_file=state)
    result = await second.load_initial()
    assert result.outcome == "loaded" and result.names == 10  # served from the state file
    assert len(holder.current) == 10
    assert len(json.loads(state.read_text())["table"]) == 10  # and not overwritten
    assert second.last_result is not None


async def test_a_rejected_pushed_value_drops_the_name_like_a_full_load() -> None:
    _source, holder, reloader = make(TEN)
    assert (await reloader.reload()).outcome == "loaded"
    await reloader.apply_changes([Change("h1.example.com", "garbage")], "v2")
    assert holder.current.lookup("h1.example.com.") is None
    assert len(holder.current) == 9
