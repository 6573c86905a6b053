"""Copy-on-write reloads: readers are answered from the old snapshot while a big one is built."""

from __future__ import annotations

import json
from pathlib import Path

import dns.message
import dns.rcode
import trio

from cowdns.store.snapshot import SnapshotHolder
from tests.helpers import TABLE, address, addresses, make_config, start_server, udp_query

BIG = 200_000


async def test_queries_during_a_200k_build_are_answered_from_the_old_snapshot(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    running = await start_server(nursery, make_config(tmp_path, mode="cow"))
    where = address(running)
    holder = running.table
    assert isinstance(holder, SnapshotHolder)
    old = holder.current
    assert old.generation == 1

    big: dict[str, object] = {
        f"n{i}.bulk.example.com": [f"192.0.2.{i % 250 + 1}"] for i in range(BIG)
    }
    big.update(TABLE)
    big["www.example.com"] = ["192.0.2.111"]
    (tmp_path / "table.json").write_text(json.dumps(big))

    checkpoints = 0
    seen_during_build: list[tuple[int, list[str], dns.rcode.Rcode]] = []

    async def checkpoint() -> None:
        # Runs between chunks of the build: the new table is half made and unpublished.
        nonlocal checkpoints
        checkpoints += 1
        if checkpoints == BIG // running.reloader.chunk // 2:
            www = await udp_query(where, dns.message.make_query("www.example.com", "A"))
            bulk = await udp_query(where, dns.message.make_query("n7.bulk.example.com", "A"))
            seen_during_build.append((holder.current.generation, addresses(www), bulk.rcode()))
        await trio.lowlevel.checkpoint()

    running.reloader.checkpoint = checkpoint
    result = await running.reloader.reload()

    assert result.outcome == "loaded"
    # Halfway through the build, the answers came from the old snapshot...
    assert seen_during_build == [(1, ["192.0.2.10"], dns.rcode.NXDOMAIN)]
    # ...and the build yielded to the event loop all along (every chunk).
    assert checkpoints >= BIG // running.reloader.chunk
    # The old snapshot object was never touched; the new one is published whole.
    assert old.lookup("n7.bulk.example.com.") is None and len(old) < 20
    assert holder.current.generation == 2
    assert len(holder.current) >= BIG
    www = await udp_query(where, dns.message.make_query("www.example.com", "A"))
    assert addresses(www) == ["192.0.2.111"]
    bulk = await udp_query(where, dns.message.make_query("n7.bulk.example.com", "A"))
    assert addresses(bulk) == ["192.0.2.8"]


async def test_editing_the_table_file_changes_answers_after_reload(
    nursery: trio.Nursery, tmp_path: Path, mode: str
) -> None:
    running = await start_server(nursery, make_config(tmp_path, mode=mode))
    where = address(running)
    table = dict(TABLE)
    table["www.example.com"] = ["192.0.2.77"]
    table["new.example.com"] = ["2001:db8::77"]
    (tmp_path / "table.json").write_text(json.dumps(table))
    assert addresses(await udp_query(where, dns.message.make_query("www.example.com", "A"))) == [
        "192.0.2.10"
    ]
    reloaded = trio.Event()
    running.reloader.on_result.append(lambda result: reloaded.set())
    running.reloader.trigger()
    with trio.fail_after(5):
        await reloaded.wait()
    assert running.reloader.table.table().generation == 2
    www = await udp_query(where, dns.message.make_query("www.example.com", "A"))
    assert addresses(www) == ["192.0.2.77"]
    new = await udp_query(where, dns.message.make_query("new.example.com", "AAAA"))
    assert addresses(new, "AAAA") == ["2001:db8::77"]


async def test_a_broken_table_file_keeps_the_last_good_table(
    nursery: trio.Nursery, tmp_path: Path, mode: str
) -> None:
    running = await start_server(nursery, make_config(tmp_path, mode=mode))
    where = address(running)
    for body in ["{not json", "[1, 2]", "", '{"www.example.com": ["192.0.2.1"]']:
        (tmp_path / "table.json").write_text(body)
        result = await running.reloader.reload()
        assert result.outcome == "failed", body
        assert result.generation == 1
        www = await udp_query(where, dns.message.make_query("www.example.com", "A"))
        assert addresses(www) == ["192.0.2.10"]
    (tmp_path / "table.json").unlink()
    result = await running.reloader.reload()
    assert result.outcome == "failed" and "table.json" in result.error
