"""Test helpers: a real cowdns server on loopback and small DNS clients for it."""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path

import dns.message
import dns.rdatatype
import trio

from cowdns.app import Running, serve
from cowdns.config import Config, load_config

# How long a test waits for an answer that must come.  Loopback answers take
# microseconds; this bound only turns a hang into a failure.
ANSWER_WAIT = 5.0
# How long a test waits before concluding that no answer will come.
SILENCE_WAIT = 0.5

CONFIG = """
[server]
listen = ["127.0.0.1:0"]
mode = "{mode}"
tcp_idle_timeout = {idle}
tcp_read_timeout = {read}
tcp_max_connections = {max_conn}

[store]
url = "file:table.json"
reload_interval = 3600

[admin]
listen = "off"

[[zone]]
origin = "example.com"
ttl = 300
ns = ["ns1.example.com", "ns2.example.com", "ns.example.net"]
[zone.soa]
mname = "ns1.example.com"
rname = "hostmaster.example.com"
serial = 2024010101
minimum = 300
ttl = 3600

[[zone]]
origin = "example.net"
ttl = 120
ns = ["ns.example.net"]
[zone.soa]
serial = 7
minimum = 300
ttl = 60
"""

TABLE: dict[str, object] = {
    "example.com": ["192.0.2.1"],
    "www.example.com": ["192.0.2.10", "2001:db8::10"],
    "api.example.com": {"ips": ["192.0.2.20", "192.0.2.21"], "ttl": 60},
    "ns1.example.com": ["192.0.2.53"],
    "ns2.example.com": ["192.0.2.54", "2001:db8::54"],
    "v6only.example.com": ["2001:db8::66"],
    "host1.lab.example.com": ["192.0.2.101"],
    "mid.example.com": [f"192.0.2.{i}" for i in range(1, 41)],
    "big.example.com": [f"2001:db8::{i:x}" for i in range(1, 101)],
    "www.example.net": ["192.0.2.80"],
    "ns.example.net": ["192.0.2.81"],
    "bad-address.example.com": ["192.0.2.300"],
    "www.example.org": ["192.0.2.99"],
}


def write_config(
    folder: Path,
    *,
    mode: str = "cow",
    table: Mapping[str, object] | None = None,
    idle: float = 10.0,
    read: float = 5.0,
    max_conn: int = 64,
) -> Path:
    (folder / "table.json").write_text(json.dumps(TABLE if table is None else table))
    path = folder / "cowdns.toml"
    path.write_text(CONFIG.format(mode=mode, idle=idle, read=read, max_conn=max_conn))
    return path


def make_config(folder: Path, **kwargs: object) -> Config:
    return load_config(write_config(folder, **kwargs))  # type: ignore[arg-type]


async def start_server(nursery: trio.Nursery, config: Config) -> Running:
    running: Running = await nursery.start(serve, config)
    return running


def address(running: Running) -> tuple[str, int]:
    return running.addresses[0]


async def udp_exchange(
    where: tuple[str, int], data: bytes, *, wait: float = ANSWER_WAIT
) -> bytes | None:
    """Send one datagram; the reply bytes, or None when nothing came within ``wait``."""
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        await sock.connect(where)
        await sock.send(data)
        with trio.move_on_after(wait):
            return await sock.recv(65535)
    return None


async def udp_query(where: tuple[str, int], query: dns.message.Message) -> dns.message.Message:
    reply = await udp_exchange(where, query.to_wire())
    assert reply is not None, "no UDP answer"
    return dns.message.from_wire(reply)


def frame(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


async def read_frame(stream: trio.SocketStream, buffer: bytearray) -> bytes | None:
    """One length-prefixed message from ``stream``; None at EOF."""
    while True:
        if len(buffer) >= 2:
            length = struct.unpack_from("!H", buffer)[0]
            if len(buffer) >= 2 + length:
                data = bytes(buffer[2 : 2 + length])
                del buffer[: 2 + length]
                return data
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        buffer += chunk


async def tcp_exchange(where: tuple[str, int], data: bytes) -> bytes | None:
    with trio.fail_after(ANSWER_WAIT):
        stream = await trio.open_tcp_stream(*where)
        async with stream:
            await stream.send_all(frame(data))
            return await read_frame(stream, bytearray())


async def tcp_query(where: tuple[str, int], query: dns.message.Message) -> dns.message.Message:
    reply = await tcp_exchange(where, query.to_wire())
    assert reply is not None, "no TCP answer"
    return dns.message.from_wire(reply)


async def query(
    where: tuple[str, int], query: dns.message.Message, transport: str
) -> dns.message.Message:
    if transport == "tcp":
        return await tcp_query(where, query)
    return await udp_query(where, query)


async def assert_serving(where: tuple[str, int]) -> None:
    """The server still answers a normal query, over UDP and TCP, at once."""
    for transport in ("udp", "tcp"):
        q = dns.message.make_query("www.example.com", "A")
        with trio.fail_after(ANSWER_WAIT):
            r = await query(where, q, transport)
        assert r.id == q.id
        assert [rd.to_text() for rd in r.answer[0]] == ["192.0.2.10"], transport


def addresses(response: dns.message.Message, rdtype: str = "A") -> list[str]:
    wanted = dns.rdatatype.from_text(rdtype)
    return sorted(
        rd.to_text() for rrset in response.answer if rrset.rdtype == wanted for rd in rrset
    )
