"""cowdns serving from a real etcd, end to end: pushes, watch, etcd dying, cowdns restarting."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import dns.message
import dns.rcode
import trio

from cowdns.app import Running
from cowdns.store.reloader import ReloadResult
from tests.etcd_server import (
    EtcdMember,
    etcd_fixture,  # noqa: F401  (fixture)
)
from tests.helpers import (
    ANSWER_WAIT,
    TABLE,
    address,
    addresses,
    make_config,
    start_server,
    udp_query,
)

PREFIX = "/dns/"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def seed(etcd: EtcdMember, table: dict[str, object]) -> None:
    for name, value in table.items():
        await etcd.put(PREFIX + name, json.dumps(value))


async def serve_from_etcd(
    nursery: trio.Nursery, tmp_path: Path, etcd: EtcdMember, mode: str = "cow"
) -> Running:
    config = make_config(tmp_path, mode=mode).with_overrides(
        store_url=f"etcd://{etcd.client_url.removeprefix('http://')}{PREFIX}",
        store_state_file=tmp_path / "state.json",
        store_reload_deadline=2.0,
    )
    return await start_server(nursery, config)


async def www(where: tuple[str, int]) -> list[str]:
    return addresses(await udp_query(where, dns.message.make_query("www.example.com", "A")))


def results(running: Running) -> trio.MemoryReceiveChannel[ReloadResult]:
    """Every reload outcome from now on (registered before the change that causes it)."""
    send, receive = trio.open_memory_channel[ReloadResult](100)
    running.reloader.on_result.append(send.send_nowait)
    return receive


async def wait_for(receive: trio.MemoryReceiveChannel[ReloadResult], outcome: str) -> None:
    with trio.fail_after(ANSWER_WAIT * 2):
        async for result in receive:
            if result.outcome == outcome:
                return


async def test_puts_and_deletes_are_served_through_the_watch(
    nursery: trio.Nursery, tmp_path: Path, etcd: EtcdMember, mode: str
) -> None:
    await seed(etcd, TABLE)
    running = await serve_from_etcd(nursery, tmp_path, etcd, mode)
    where = address(running)
    assert await www(where) == ["192.0.2.10"]

    outcomes = results(running)
    await etcd.put(PREFIX + "www.example.com", '["192.0.2.99"]')
    await wait_for(outcomes, "loaded")
    assert await www(where) == ["192.0.2.99"]

    await etcd.delete(PREFIX + "api.example.com")
    await wait_for(outcomes, "loaded")
    gone = await udp_query(where, dns.message.make_query("api.example.com", "A"))
    assert gone.rcode() == dns.rcode.NXDOMAIN


async def test_etcd_killed_and_restarted_while_the_server_keeps_answering(
    nursery: trio.Nursery, tmp_path: Path, etcd: EtcdMember
) -> None:
    await seed(etcd, TABLE)
    running = await serve_from_etcd(nursery, tmp_path, etcd)
    where = address(running)

    await etcd.kill()
    failed = await running.reloader.reload(force=True)
    assert failed.outcome == "failed"
    for _ in range(20):  # the last good table keeps being served
        assert await www(where) == ["192.0.2.10"]

    await etcd.restart()
    await etcd.put(PREFIX + "www.example.com", '["192.0.2.77"]')
    result = await running.reloader.reload()
    assert result.outcome == "loaded"
    assert await www(where) == ["192.0.2.77"]


async def test_restart_while_etcd_is_down_serves_the_state_file(
    tmp_path: Path, etcd: EtcdMember
) -> None:
    await seed(etcd, TABLE)
    async with trio.open_nursery() as first:
        running = await serve_from_etcd(first, tmp_path, etcd)
        assert await www(address(running)) == ["192.0.2.10"]
        running.stop()
    assert (tmp_path / "state.json").exists()

    await etcd.kill()
    async with trio.open_nursery() as second:
        running = await serve_from_etcd(second, tmp_path, etcd)
        assert running.reloader.last_result is not None
        assert running.reloader.last_result.outcome == "loaded"  # from the state file
        assert await www(address(running)) == ["192.0.2.10"]
        running.stop()


async def test_deleting_the_whole_prefix_is_refused_and_the_table_kept(
    nursery: trio.Nursery, tmp_path: Path, etcd: EtcdMember
) -> None:
    await seed(etcd, TABLE)
    running = await serve_from_etcd(nursery, tmp_path, etcd)
    where = address(running)
    outcomes = results(running)
    await etcd.call(
        "/v3/kv/deleterange", {"key": _b64(PREFIX), "range_end": _b64(PREFIX[:-1] + "0")}
    )
    await wait_for(outcomes, "refused")
    for _ in range(5):
        assert await www(where) == ["192.0.2.10"]
