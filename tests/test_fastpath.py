"""The bytes-level fast path answers exactly what the normal path answers, byte for byte."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import pytest
import trio

from cowdns.engine import Engine
from cowdns.fastpath import cache_key
from cowdns.filters.base import Transport
from cowdns.store.locked import LockedTable
from cowdns.store.reloader import Reloader
from cowdns.store.snapshot import SnapshotHolder
from cowdns.store.sources.file import FileSource
from tests.helpers import address, make_config, start_server, udp_exchange

NAMES = [
    "www.example.com",
    "api.example.com",
    "example.com",
    "lab.example.com",
    "host1.lab.example.com",
    "missing.example.com",
    "ns2.example.com",
    "v6only.example.com",
    "mid.example.com",
    "big.example.com",
    "www.example.net",
    "www.example.org",
]
TYPES = ["A", "AAAA", "MX", "ANY", "NS", "SOA", "TXT"]
EDNS = [None, 0, 512, 600, 1232, 4096]  # None: no EDNS; 0: EDNS with payload 0
CLASSES = ["IN", "CH"]


def random_case(name: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c for c in name)


def make(
    name: str,
    rdtype: str,
    edns: int | None,
    *,
    do: bool,
    rd: bool,
    cd: bool,
    rdclass: str = "IN",
    option: bool = False,
) -> bytes:
    options: list[dns.edns.Option] | None = (
        [dns.edns.GenericOption(dns.edns.OptionType.make(65001), b"xyz")] if option else None
    )
    if edns is None:
        message = dns.message.make_query(name, rdtype, rdclass=rdclass, use_edns=False)
    else:
        message = dns.message.make_query(
            name,
            rdtype,
            rdclass=rdclass,
            use_edns=0,
            payload=edns,
            want_dnssec=do,
            options=options,
        )
    if not rd:
        message.flags &= ~dns.flags.RD
    if cd:
        message.flags |= dns.flags.CD
    return message.to_wire()


async def engine_for(tmp_path: Path, mode: str) -> Engine:
    config = make_config(tmp_path, mode=mode)
    table: SnapshotHolder | LockedTable = (
        SnapshotHolder.empty(config.zones) if mode == "cow" else LockedTable(config.zones)
    )
    reloader = Reloader(FileSource(tmp_path / "table.json"), table)
    assert (await reloader.reload()).outcome == "loaded"
    return Engine(table, max_payload=config.server.max_udp_payload)


def corpus(seed: int) -> list[tuple[str, str, int | None, bool, bool, bool, str, bool, Transport]]:
    rng = random.Random(seed)
    cases = []
    transports: list[Transport] = ["udp", "tcp"]
    for name, rdtype, edns, transport in itertools.product(NAMES, TYPES, EDNS, transports):
        cases.append(
            (
                name,
                rdtype,
                edns,
                rng.random() < 0.3,
                rng.random() < 0.5,
                rng.random() < 0.2,
                rng.choice(CLASSES) if rng.random() < 0.1 else "IN",
                rng.random() < 0.2,
                transport,
            )
        )
    return cases


@pytest.mark.parametrize("mode", ["cow", "locked"])
async def test_fast_path_replies_are_byte_identical_to_the_normal_path(
    tmp_path: Path, mode: str
) -> None:
    engine = await engine_for(tmp_path, mode)
    rng = random.Random(7)
    checked = 0
    for name, rdtype, edns, do, rd, cd, rdclass, option, transport in corpus(1):
        prime = make(
            random_case(name, rng),
            rdtype,
            edns,
            do=do,
            rd=rd,
            cd=cd,
            rdclass=rdclass,
            option=option,
        )
        probe = make(
            random_case(name, rng),
            rdtype,
            edns,
            do=do,
            rd=rd,
            cd=cd,
            rdclass=rdclass,
            option=not option,
        )
        assert cache_key(prime, transport, 1232) == cache_key(probe, transport, 1232)
        await engine.handle(prime, transport)  # fills the cache
        # The normal path, computed directly, for the probe (different ID and case).
        if isinstance(engine.table, LockedTable):
            async with engine.table.reading() as view:
                normal = engine._normal(probe, transport, view)[0]
        else:
            normal = engine._normal(probe, transport, engine.table.current)[0]
        hits_before = engine.stats.cache_hits
        fast = await engine.handle(probe, transport)
        assert engine.stats.cache_hits == hits_before + 1  # the probe was a cache hit
        assert normal is not None and fast == normal, (name, rdtype, edns, rd, cd, transport)
        # The same bytes again under another ID: the first-level (exact bytes) hit.
        again = bytes([probe[0] ^ 0x5A, probe[1] ^ 0xA5]) + probe[2:]
        repeat = await engine.handle(again, transport)
        assert repeat == again[:2] + normal[2:]
        checked += 1
    assert checked == len(NAMES) * len(TYPES) * len(EDNS) * 2


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(
            b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",
            id="pointer",
        ),
        pytest.param(
            make("www.example.com", "A", None, do=False, rd=True, cd=False) + b"x", id="trailing"
        ),
        pytest.param(
            make("www.example.com", "A", 1232, do=False, rd=True, cd=False)[:-2], id="short-opt"
        ),
        pytest.param(
            b"\x00\x01\x81\x00"
            + make("www.example.com", "A", None, do=False, rd=True, cd=False)[4:],
            id="qr",
        ),
        pytest.param(
            b"\x00\x01\x28\x00"
            + make("www.example.com", "A", None, do=False, rd=True, cd=False)[4:],
            id="update",
        ),
    ],
)
def test_unusual_messages_take_the_normal_path(wire: bytes) -> None:
    assert cache_key(wire, "udp", 1232) is None


def test_edns_version_one_takes_the_normal_path() -> None:
    message = dns.message.make_query("www.example.com", "A", use_edns=1)
    assert cache_key(message.to_wire(), "udp", 1232) is None


async def test_cache_dies_with_its_snapshot(nursery: trio.Nursery, tmp_path: Path) -> None:
    running = await start_server(nursery, make_config(tmp_path, mode="cow"))
    where = address(running)
    wire = make("www.example.com", "A", None, do=False, rd=True, cd=False)
    first = await udp_exchange(where, wire)
    second = await udp_exchange(where, wire)
    assert first == second and running.engine.stats.cache_hits >= 1
    (tmp_path / "table.json").write_text('{"www.example.com": ["192.0.2.222"]}')
    result = await running.reloader.reload(force=True)
    assert result.outcome == "loaded"
    third = await udp_exchange(where, wire)
    assert third is not None
    assert dns.message.from_wire(third).answer[0][0].address == "192.0.2.222"


async def test_locked_cache_is_cleared_under_the_write_lock(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    running = await start_server(nursery, make_config(tmp_path, mode="locked"))
    where = address(running)
    wire = make("www.example.com", "A", None, do=False, rd=True, cd=False)
    await udp_exchange(where, wire)
    await udp_exchange(where, wire)
    assert running.engine.stats.cache_hits >= 1
    (tmp_path / "table.json").write_text('{"www.example.com": ["192.0.2.223"]}')
    assert (await running.reloader.reload(force=True)).outcome == "loaded"
    reply = await udp_exchange(where, wire)
    assert reply is not None
    assert dns.message.from_wire(reply).answer[0][0].address == "192.0.2.223"


def test_cache_is_bounded() -> None:
    from cowdns.store.zones import Zones

    engine = Engine(SnapshotHolder.empty(Zones(())), cache_size=10)
    for i in range(50):
        engine.answer_now(make(f"n{i}.example.com", "A", None, do=False, rd=True, cd=False), "udp")  # type: ignore[misc]
    assert len(engine._cache) <= 10


async def test_replies_carried_over_a_reload_equal_the_normal_path(tmp_path: Path) -> None:
    engine = await engine_for(tmp_path, "cow")
    holder = engine.table
    assert isinstance(holder, SnapshotHolder)
    rng = random.Random(3)
    queries = [
        make(random_case(name, rng), rdtype, edns, do=False, rd=True, cd=False)
        for name in [*NAMES, "deep.lab.example.com", "new.example.com", "other.example.com"]
        for rdtype in TYPES
        for edns in (None, 1232)
    ]
    for wire in queries:
        engine.answer_now(wire, "udp")  # type: ignore[misc]  # fills generation 1's cache

    # The next table changes one name, removes one, adds one under an empty
    # non-terminal (which stops being empty) and one new name; the rest is equal.
    table = json.loads((tmp_path / "table.json").read_text())
    table["www.example.com"] = ["192.0.2.111"]
    del table["api.example.com"]
    table["deep.lab.example.com"] = ["2001:db8::77"]
    table["new.example.com"] = ["192.0.2.78"]
    table["x.other.example.com"] = ["192.0.2.79"]  # other.example.com: NXDOMAIN → NODATA
    table["ns1.example.com"] = ["192.0.2.153"]  # glue of the apex NS answer
    (tmp_path / "table.json").write_text(json.dumps(table))
    reloader = Reloader(FileSource(tmp_path / "table.json"), holder)
    assert (await reloader.reload()).outcome == "loaded"

    carried_before = engine.stats.cache_carried
    for wire in queries:
        reply = engine.answer_now(wire, "udp")  # type: ignore[misc]
        normal = engine._normal(wire, "udp", holder.current)[0]
        assert reply == normal, dns.message.from_wire(wire).question
    carried = engine.stats.cache_carried - carried_before
    assert 0 < carried < len(queries)  # the unchanged names were carried, the rest recomputed
