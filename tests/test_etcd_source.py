"""EtcdSource, push and the reloader against a real etcd (single member and a 3-member cluster)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import dns.name
import httpx
import pytest
import trio

from cowdns.errors import ConfigError, SourceError
from cowdns.store.push import PushReport, push_table
from cowdns.store.reloader import Reloader, ReloadResult
from cowdns.store.snapshot import SnapshotHolder
from cowdns.store.sources import Change, Fetched, WatchableSource
from cowdns.store.sources.etcd import EtcdSource, prefix_end
from cowdns.store.sources.urls import open_source, parse_etcd_url
from cowdns.store.table import Entry, build_table
from cowdns.store.zones import Soa, Zone, Zones
from tests.etcd_server import (
    EtcdCluster,
    EtcdMember,
    etcd_cluster_fixture,  # noqa: F401  (fixture)
    etcd_fixture,  # noqa: F401  (fixture)
    free_port,
)

PREFIX = "/dns/"
# Overall bound on waiting for etcd: events take milliseconds, but a cluster's
# election after a member stops can take many seconds on a loaded machine.
WAIT = 60.0


def make_zones() -> Zones:
    origin = dns.name.from_text("example.com.")
    soa = Soa(
        dns.name.from_text("ns1.example.com."),
        dns.name.from_text("hostmaster.example.com."),
        1,
        3600,
        600,
        86400,
        300,
        300,
    )
    return Zones((Zone(origin, 300, (), soa),))


@pytest.fixture
async def source(etcd: EtcdMember) -> AsyncIterator[EtcdSource]:
    src = EtcdSource([etcd.client_url], PREFIX)
    try:
        yield src
    finally:
        await src.aclose()


async def put_json(member: EtcdMember, name: str, value: object) -> int:
    return await member.put(PREFIX + name, json.dumps(value))


class Changes:
    """Collects what a watch delivers; tests await batches instead of sleeping."""

    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[tuple[list[Change], str]](100)

    async def __call__(self, changes: Sequence[Change], version: str) -> None:
        await self.send.send((list(changes), version))

    async def until(
        self, done: Callable[[dict[str, object | None]], bool]
    ) -> tuple[dict[str, Any], str]:
        """Receive batches until ``done(state)``; ``state`` is key → last value (None: deleted)."""
        state: dict[str, object | None] = {}
        version = ""
        with trio.fail_after(WAIT):
            while not done(state):
                changes, version = await self.receive.receive()
                for change in changes:
                    state[change.key] = change.value
        return state, version


# -- full loads ---------------------------------------------------------------------


async def test_full_load_reads_all_pages_at_one_revision(etcd: EtcdMember) -> None:
    names = [f"host{i:02d}.example.com" for i in range(10)]
    for index, name in enumerate(names):
        await put_json(etcd, name, [f"192.0.2.{index + 1}"])
    # Neighbours of the prefix that must not be read.
    await etcd.put("/dnsx/other.example.com", '["192.0.2.99"]')
    await etcd.put("/dns", '["192.0.2.98"]')
    loaded_at = await etcd.put("/elsewhere", "x")

    requests: list[dict[str, Any]] = []
    injected = False

    async def write_during_paging(response: httpx.Response) -> None:
        # After the first page has been answered, the table changes under the reader.
        nonlocal injected
        if response.request.url.path == "/v3/kv/range":
            requests.append(json.loads(response.request.content))
            if not injected:
                injected = True
                await put_json(etcd, "late.example.com", ["192.0.2.200"])
                await put_json(etcd, names[-1], ["192.0.2.201"])
                await etcd.delete(PREFIX + names[-2])

    async with httpx.AsyncClient(event_hooks={"response": [write_during_paging]}) as client:
        source = EtcdSource([etcd.client_url], PREFIX, client=client, page_size=3)
        fetched = await source.fetch()

        assert fetched is not None
        assert fetched.version == str(loaded_at)
        assert fetched.entries == {name: [f"192.0.2.{i + 1}"] for i, name in enumerate(names)}
        assert len(requests) == 4  # 3 + 3 + 3 + 1 keys
        assert "revision" not in requests[0]
        assert {request.get("revision") for request in requests[1:]} == {str(loaded_at)}
        assert all(request["limit"] == 3 for request in requests)

        # The next load sees the writes, again as one consistent state.
        again = await source.fetch()
        assert again is not None
        assert int(again.version) == loaded_at + 3
        assert again.entries["late.example.com"] == ["192.0.2.200"]
        assert again.entries[names[-1]] == ["192.0.2.201"]
        assert names[-2] not in again.entries


async def test_fetch_is_none_while_the_prefix_is_unchanged(
    etcd: EtcdMember, source: EtcdSource
) -> None:
    await put_json(etcd, "www.example.com", ["192.0.2.1"])
    await put_json(etcd, "mail.example.com", ["192.0.2.2"])
    first = await source.fetch()
    assert first is not None

    assert await source.fetch() is None
    # Writes elsewhere move the cluster revision but not our table.
    await etcd.put("/other/key", "1")
    await etcd.put("/dnsx/www.example.com", "1")
    assert await source.fetch() is None

    await etcd.delete(PREFIX + "mail.example.com")
    deleted = await source.fetch()
    assert deleted is not None and set(deleted.entries) == {"www.example.com"}

    # A key added and removed again leaves the table as it was: nothing to reload.
    await put_json(etcd, "tmp.example.com", ["192.0.2.3"])
    await etcd.delete(PREFIX + "tmp.example.com")
    assert await source.fetch() is None

    await put_json(etcd, "www.example.com", ["192.0.2.9"])
    changed = await source.fetch()
    assert changed is not None and changed.entries == {"www.example.com": ["192.0.2.9"]}

    source.forget_version()
    forced = await source.fetch()
    assert forced is not None and forced.entries == changed.entries


async def test_values_are_json_and_bad_ones_are_reported_with_their_key(
    etcd: EtcdMember, source: EtcdSource
) -> None:
    await put_json(etcd, "www.example.com", {"ips": ["192.0.2.1", "2001:db8::1"], "ttl": 60})
    await etcd.put(PREFIX + "bad.example.com", "192.0.2.2")  # not JSON
    await etcd.put(PREFIX + "empty.example.com", "")
    fetched = await source.fetch()
    assert fetched is not None

    async def no_checkpoint() -> None:
        return None

    builder = await build_table(make_zones(), fetched.entries, no_checkpoint)
    assert builder.entries == {"www.example.com.": Entry(("192.0.2.1",), ("2001:db8::1",), 60)}
    rejected = {error.key: error.message for error in builder.rejected}
    assert set(rejected) == {"bad.example.com", "empty.example.com"}
    assert "list" in rejected["bad.example.com"]


async def test_empty_prefix_loads_an_empty_table(etcd: EtcdMember, source: EtcdSource) -> None:
    revision = await etcd.put("/other", "1")
    fetched = await source.fetch()
    assert fetched == Fetched({}, str(revision))


# -- watch --------------------------------------------------------------------------


async def test_watch_delivers_puts_and_deletes(etcd: EtcdMember, source: EtcdSource) -> None:
    await put_json(etcd, "www.example.com", ["192.0.2.1"])
    fetched = await source.fetch()
    assert fetched is not None
    assert isinstance(source, WatchableSource)
    changes = Changes()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(source.watch, fetched.version, changes)

        put_at = await put_json(etcd, "new.example.com", {"ips": ["2001:db8::5"], "ttl": 30})
        await etcd.put("/elsewhere", "not ours")
        state, version = await changes.until(lambda s: "new.example.com" in s)
        assert state == {"new.example.com": {"ips": ["2001:db8::5"], "ttl": 30}}
        assert version == str(put_at)

        deleted_at = await etcd.delete(PREFIX + "www.example.com")
        state, version = await changes.until(lambda s: "www.example.com" in s)
        assert state == {"www.example.com": None}
        assert version == str(deleted_at)
        nursery.cancel_scope.cancel()


async def test_fetch_after_watched_changes_reads_nothing_new(
    etcd: EtcdMember, source: EtcdSource
) -> None:
    await put_json(etcd, "www.example.com", ["192.0.2.1"])
    fetched = await source.fetch()
    assert fetched is not None
    changes = Changes()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(source.watch, fetched.version, changes)
        await put_json(etcd, "new.example.com", ["192.0.2.2"])
        await put_json(etcd, "www.example.com", ["192.0.2.3"])
        await etcd.delete(PREFIX + "new.example.com")
        await put_json(etcd, "last.example.com", ["192.0.2.4"])
        await changes.until(lambda s: "last.example.com" in s)
        nursery.cancel_scope.cancel()
    # Whoever applied the watched changes already has this state: no full read.
    assert await source.fetch() is None

    await put_json(etcd, "unwatched.example.com", ["192.0.2.5"])
    after = await source.fetch()
    assert after is not None
    assert set(after.entries) == {"www.example.com", "last.example.com", "unwatched.example.com"}


async def test_watch_catches_up_from_the_loaded_revision(
    etcd: EtcdMember, source: EtcdSource
) -> None:
    fetched = await source.fetch()
    assert fetched is not None
    # Written before the watch starts: delivered anyway, from the loaded revision + 1.
    last = 0
    for index in range(20):
        last = await put_json(etcd, f"h{index}.example.com", [f"192.0.2.{index + 1}"])
    changes = Changes()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(source.watch, fetched.version, changes)
        state, version = await changes.until(lambda s: len(s) == 20)
        nursery.cancel_scope.cancel()
    assert state["h19.example.com"] == ["192.0.2.20"]
    assert version == str(last)


async def test_watch_from_a_compacted_revision_raises(etcd: EtcdMember, source: EtcdSource) -> None:
    fetched = await source.fetch()
    assert fetched is not None
    for index in range(3):
        latest = await put_json(etcd, f"h{index}.example.com", ["192.0.2.1"])
    await etcd.compact(latest)
    with trio.fail_after(WAIT), pytest.raises(SourceError, match="compacted"):
        await source.watch(fetched.version, Changes())
    # The reloader's way out: a full load works and can be watched again.
    source.forget_version()
    again = await source.fetch()
    assert again is not None and again.version == str(latest)


async def test_watch_rejects_a_version_that_is_not_a_revision(source: EtcdSource) -> None:
    with pytest.raises(SourceError, match="cannot watch"):
        await source.watch("sha256:0123", Changes())


# -- failures and failover ----------------------------------------------------------


async def test_fails_over_to_the_next_endpoint(etcd: EtcdMember) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    await put_json(etcd, "www.example.com", ["192.0.2.1"])
    source = EtcdSource([dead, etcd.client_url], PREFIX)
    try:
        fetched = await source.fetch()
        assert fetched is not None and fetched.entries == {"www.example.com": ["192.0.2.1"]}
        assert source.endpoint == etcd.client_url
        changes = Changes()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(source.watch, fetched.version, changes)
            await put_json(etcd, "new.example.com", ["192.0.2.2"])
            state, _ = await changes.until(lambda s: "new.example.com" in s)
            nursery.cancel_scope.cancel()
        assert state == {"new.example.com": ["192.0.2.2"]}
    finally:
        await source.aclose()


async def test_no_member_answers_is_one_source_error() -> None:
    dead = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    source = EtcdSource(dead, PREFIX)
    try:
        with pytest.raises(SourceError) as caught:
            await source.fetch()
        message = str(caught.value)
        assert "no member answered" in message
        assert dead[0] in message and dead[1] in message
        assert "\n" not in message
        with pytest.raises(SourceError, match="no member answered"):
            await source.watch("1", Changes())
    finally:
        await source.aclose()


async def test_killed_etcd_fails_then_recovers_after_restart(
    etcd: EtcdMember, source: EtcdSource
) -> None:
    await put_json(etcd, "www.example.com", ["192.0.2.1"])
    fetched = await source.fetch()
    assert fetched is not None
    errors: list[SourceError] = []
    streaming = trio.Event()

    async def on_changes(changes: Sequence[Change], version: str) -> None:
        streaming.set()

    async def watch() -> None:
        try:
            await source.watch(fetched.version, on_changes)
        except SourceError as exc:
            errors.append(exc)

    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await put_json(etcd, "probe.example.com", ["192.0.2.7"])
            await streaming.wait()  # the stream is established and delivering
            await etcd.kill()
    assert len(errors) == 1 and "watch" in str(errors[0])

    with pytest.raises(SourceError, match="no member answered"):
        await source.fetch()

    await etcd.restart()
    await put_json(etcd, "after.example.com", ["192.0.2.3"])
    source.forget_version()  # what the reloader does after a failure
    again = await source.fetch()
    assert again is not None
    assert set(again.entries) == {"www.example.com", "probe.example.com", "after.example.com"}


async def test_cluster_keeps_serving_with_one_member_stopped(
    etcd_cluster: EtcdCluster,
) -> None:
    first, second, third = etcd_cluster.members
    source = EtcdSource(etcd_cluster.client_urls, PREFIX)
    try:
        await put_json(second, "www.example.com", ["192.0.2.1"])
        fetched = await source.fetch()
        assert fetched is not None
        assert source.endpoint == first.client_url

        changes = Changes()
        broken: list[SourceError] = []

        async def watch(since: str) -> None:
            try:
                await source.watch(since, changes)
            except SourceError as exc:
                broken.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, fetched.version)
            await put_json(third, "a.example.com", ["192.0.2.2"])
            await changes.until(lambda s: "a.example.com" in s)
            await first.stop()
        assert broken  # the stream to the stopped member ended

        await put_json(second, "b.example.com", ["192.0.2.3"])
        source.forget_version()
        after = await source.fetch()
        assert after is not None
        assert set(after.entries) == {"www.example.com", "a.example.com", "b.example.com"}
        assert source.endpoint in (second.client_url, third.client_url)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(source.watch, after.version, changes)
            await put_json(third, "c.example.com", ["192.0.2.4"])
            await etcd_cluster.members[1].delete(PREFIX + "a.example.com")
            state, _ = await changes.until(lambda s: "c.example.com" in s and "a.example.com" in s)
            nursery.cancel_scope.cancel()
        assert state == {"c.example.com": ["192.0.2.4"], "a.example.com": None}
    finally:
        await source.aclose()


# -- the reloader with a real etcd ----------------------------------------------------


class Results:
    def __init__(self, reloader: Reloader, holder: SnapshotHolder) -> None:
        self.holder = holder
        self.send, self.receive = trio.open_memory_channel[ReloadResult](1000)
        reloader.on_result.append(self.send.send_nowait)

    async def until(self, done: Callable[[SnapshotHolder], bool]) -> None:
        with trio.fail_after(WAIT):
            while not done(self.holder):
                await self.receive.receive()


async def test_reloader_loads_and_applies_watched_changes(etcd: EtcdMember) -> None:
    await put_json(etcd, "www.example.com", ["192.0.2.1"])
    await put_json(etcd, "mail.example.com", {"ips": ["2001:db8::25"], "ttl": 60})
    holder = SnapshotHolder.empty(make_zones())
    source = EtcdSource([etcd.client_url], PREFIX)
    reloader = Reloader(source, holder)
    results = Results(reloader, holder)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(reloader.run)
            served = holder.current
            assert set(served.entries) == {"www.example.com.", "mail.example.com."}
            assert served.lookup("mail.example.com.") == Entry((), ("2001:db8::25",), 60)

            put_at = await put_json(etcd, "new.example.com", ["192.0.2.3"])
            await results.until(lambda h: h.current.lookup("new.example.com.") is not None)
            assert holder.current.version == str(put_at)
            assert holder.current.generation == served.generation + 1

            await etcd.delete(PREFIX + "www.example.com")
            await results.until(lambda h: h.current.lookup("www.example.com.") is None)
            assert set(holder.current.entries) == {"mail.example.com.", "new.example.com."}

            # The periodic reload finds nothing the watch has not delivered already.
            generation = holder.current.generation
            assert (await reloader.reload()).outcome == "unchanged"
            assert holder.current.generation == generation
            nursery.cancel_scope.cancel()
    finally:
        await source.aclose()


async def test_reloader_survives_a_stopped_cluster_member(etcd_cluster: EtcdCluster) -> None:
    first, second, third = etcd_cluster.members
    await put_json(second, "www.example.com", ["192.0.2.1"])
    holder = SnapshotHolder.empty(make_zones())
    source = EtcdSource(etcd_cluster.client_urls, PREFIX)
    reloader = Reloader(source, holder)
    results = Results(reloader, holder)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(reloader.run)
            assert holder.current.lookup("www.example.com.") is not None
            await first.stop()  # the member the reloader reads and watches
            await put_json(third, "new.example.com", ["192.0.2.2"])
            await results.until(lambda h: h.current.lookup("new.example.com.") is not None)
            await second.delete(PREFIX + "www.example.com")
            await results.until(lambda h: h.current.lookup("www.example.com.") is None)
            nursery.cancel_scope.cancel()
    finally:
        await source.aclose()


# -- push ---------------------------------------------------------------------------


def write_table(path: Path, table: dict[str, object]) -> Path:
    path.write_text(json.dumps(table, indent=2))
    return path


async def stored(etcd: EtcdMember) -> dict[str, object]:
    source = EtcdSource([etcd.client_url], PREFIX)
    try:
        raw = await source.read_raw()
    finally:
        await source.aclose()
    return {name: json.loads(value) for name, value in raw.values.items()}


async def test_push_replaces_the_prefix(
    etcd: EtcdMember, source: EtcdSource, tmp_path: Path
) -> None:
    await etcd.put("/dnsx/keep.example.com", "untouched")
    first = write_table(
        tmp_path / "t1.json",
        {
            "www.example.com": ["192.0.2.1"],
            "mail.example.com": {"ips": ["192.0.2.2"], "ttl": 60},
            "old.example.com": ["192.0.2.3"],
        },
    )
    report = await push_table(first, source)
    assert report.added == ("www.example.com", "mail.example.com", "old.example.com")
    assert (report.changed, report.removed, report.unchanged) == ((), (), 0)
    assert report.transactions == 1 and report.atomic
    assert await etcd.get(PREFIX + "mail.example.com") == '{"ips":["192.0.2.2"],"ttl":60}'

    second = write_table(
        tmp_path / "t2.json",
        {
            "www.example.com": ["192.0.2.1"],
            "mail.example.com": ["192.0.2.2", "2001:db8::2"],
            "new.example.com": ["192.0.2.4"],
        },
    )
    report = await push_table(second, source)
    assert report == PushReport(
        added=("new.example.com",),
        changed=("mail.example.com",),
        removed=("old.example.com",),
        unchanged=1,
        revision=report.revision,
        transactions=1,
    )
    assert list(report.lines()) == [
        report.summary(),
        "+ new.example.com",
        "~ mail.example.com",
        "- old.example.com",
    ]
    assert "1 added, 1 changed, 1 removed, 1 unchanged" in report.summary()
    assert await stored(etcd) == json.loads(second.read_text())
    assert await etcd.get("/dnsx/keep.example.com") == "untouched"

    # Pushing the same table again writes nothing: no revision, no watch event.
    again = await push_table(second, source)
    assert (again.added, again.changed, again.removed, again.transactions) == ((), (), (), 0)
    assert again.revision == report.revision


async def test_push_bigger_than_one_transaction_goes_in_batches(
    etcd: EtcdMember, source: EtcdSource, tmp_path: Path
) -> None:
    table: dict[str, object] = {
        f"h{i:03d}.example.com": [f"192.0.2.{i % 250 + 1}"] for i in range(300)
    }
    report = await push_table(write_table(tmp_path / "big.json", table), source)
    assert len(report.added) == 300
    assert report.transactions == 3 and not report.atomic  # 128 + 128 + 44
    assert await stored(etcd) == table

    smaller = {name: value for name, value in table.items() if name < "h200"}
    report = await push_table(write_table(tmp_path / "small.json", smaller), source, max_ops=40)
    assert len(report.removed) == 100 and report.transactions == 3
    assert await stored(etcd) == smaller


async def test_push_recomputes_when_someone_writes_meanwhile(
    etcd: EtcdMember, tmp_path: Path
) -> None:
    txns: list[bool] = []
    intruded = False

    async def intrude(response: httpx.Response) -> None:
        nonlocal intruded
        path = response.request.url.path
        if path == "/v3/kv/range" and not intruded:
            intruded = True
            await put_json(etcd, "intruder.example.com", ["192.0.2.66"])
        if path == "/v3/kv/txn":
            await response.aread()
            txns.append(bool(response.json().get("succeeded")))

    async with httpx.AsyncClient(event_hooks={"response": [intrude]}) as client:
        source = EtcdSource([etcd.client_url], PREFIX, client=client)
        report = await push_table(
            write_table(tmp_path / "t.json", {"www.example.com": ["192.0.2.1"]}), source
        )
    assert txns == [False, True]  # the stale diff was refused, the fresh one applied
    assert report.added == ("www.example.com",)
    assert report.removed == ("intruder.example.com",)
    assert await stored(etcd) == {"www.example.com": ["192.0.2.1"]}


async def test_batched_push_stops_at_a_concurrent_writer(etcd: EtcdMember, tmp_path: Path) -> None:
    table: dict[str, object] = {f"h{i}.example.com": ["192.0.2.1"] for i in range(10)}
    intruded = False

    async def intrude(response: httpx.Response) -> None:
        nonlocal intruded
        if response.request.url.path == "/v3/kv/range" and not intruded:
            intruded = True
            await put_json(etcd, "h9.example.com", ["192.0.2.99"])  # in the last batch

    async with httpx.AsyncClient(event_hooks={"response": [intrude]}) as client:
        source = EtcdSource([etcd.client_url], PREFIX, client=client)
        with pytest.raises(SourceError, match="stopped after 3 of 4 transactions"):
            await push_table(write_table(tmp_path / "t.json", table), source, max_ops=3)
    state = await stored(etcd)
    assert state["h9.example.com"] == ["192.0.2.99"]  # the other writer's value survives
    assert len(state) == 10

    # Running the push again finishes it.
    source = EtcdSource([etcd.client_url], PREFIX)
    try:
        report = await push_table(tmp_path / "t.json", source, max_ops=3)
    finally:
        await source.aclose()
    assert report.changed == ("h9.example.com",) and report.transactions == 1
    assert await stored(etcd) == table


async def test_push_of_a_bad_file_is_a_source_error(source: EtcdSource, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(SourceError, match="expected one JSON object"):
        await push_table(bad, source)
    with pytest.raises(SourceError, match=r"missing\.json"):
        await push_table(tmp_path / "missing.json", source)


# -- URLs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "endpoints", "prefix"),
    [
        ("etcd://127.0.0.1:2379/dns/", ["http://127.0.0.1:2379"], "/dns/"),
        ("etcd://127.0.0.1:2379/cowdns/", ["http://127.0.0.1:2379"], "/cowdns/"),
        (
            "etcd://192.0.2.1:2379,192.0.2.2:2380,[2001:db8::1]:2379/a/b/",
            ["http://192.0.2.1:2379", "http://192.0.2.2:2380", "http://[2001:db8::1]:2379"],
            "/a/b/",
        ),
        ("etcd://etcd.example.com/dns/", ["http://etcd.example.com:2379"], "/dns/"),
        ("etcd://192.0.2.1:2379/with%20space/", ["http://192.0.2.1:2379"], "/with space/"),
    ],
    ids=["single", "other-prefix", "three-members", "default-port", "escaped"],
)
def test_etcd_urls(url: str, endpoints: list[str], prefix: str) -> None:
    assert parse_etcd_url(url) == (endpoints, prefix)
    source = open_source(url, Path("/unused"))
    assert isinstance(source, EtcdSource)
    assert source.endpoints == tuple(endpoints) and source.prefix == prefix


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("etcd://192.0.2.1:2379", "needs a key prefix"),
        ("etcd://192.0.2.1:2379/", "needs a key prefix"),
        ("etcd://192.0.2.1:2379/dns", "must end with '/'"),
        ("etcd://192.0.2.1:99999/dns/", "bad port"),
        ("etcd://192.0.2.1:2379,/dns/", "empty host"),
        ("etcd://user:pw@192.0.2.1:2379/dns/", "no user name"),
        ("etcd://192.0.2.1:2379/dns/?x=1", "no query"),
    ],
    ids=["no-path", "root", "no-trailing-slash", "port", "empty-host", "userinfo", "query"],
)
def test_bad_etcd_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        open_source(url, Path("/unused"))
    assert caught.value.key == "store.url"


def test_prefix_end() -> None:
    assert prefix_end(b"/dns/") == b"/dns0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\x00"
