"""TCP per RFC 7766: pipelining, fragmented frames, timeouts and the connection cap."""

from __future__ import annotations

import random
from pathlib import Path

import dns.message
import dns.rcode
import pytest
import trio
import trio.testing

from tests.helpers import (
    ANSWER_WAIT,
    address,
    addresses,
    assert_serving,
    frame,
    make_config,
    read_frame,
    start_server,
)

Where = tuple[str, int]


async def open_stream(where: Where) -> trio.SocketStream:
    return await trio.open_tcp_stream(*where)


async def test_many_pipelined_queries_on_one_connection(where: Where) -> None:
    names = ["www.example.com", "api.example.com", "missing.example.com", "ns1.example.com"] * 5
    queries = [dns.message.make_query(name, "A") for name in names]
    async with await open_stream(where) as stream:
        await stream.send_all(b"".join(frame(m.to_wire()) for m in queries))
        buffer = bytearray()
        answers: dict[int, dns.message.Message] = {}
        with trio.fail_after(ANSWER_WAIT):
            while len(answers) < len(queries):
                data = await read_frame(stream, buffer)
                assert data is not None
                response = dns.message.from_wire(data)
                answers[response.id] = response
    for message, name in zip(queries, names, strict=True):
        response = answers[message.id]
        assert response.question == message.question
        if name == "missing.example.com":
            assert response.rcode() == dns.rcode.NXDOMAIN
        else:
            assert addresses(response)


@pytest.mark.parametrize("piece", [1, 2, 3, 7])
async def test_length_prefix_and_message_split_over_many_writes(where: Where, piece: int) -> None:
    message = dns.message.make_query("www.example.com", "A")
    data = frame(message.to_wire())
    async with await open_stream(where) as stream:
        for start in range(0, len(data), piece):
            await stream.send_all(data[start : start + piece])
            await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(ANSWER_WAIT):
            reply = await read_frame(stream, bytearray())
    assert reply is not None
    assert addresses(dns.message.from_wire(reply)) == ["192.0.2.10"]


async def test_garbage_frames_get_formerr_and_the_connection_keeps_working(where: Where) -> None:
    rng = random.Random(1)
    # Random bodies behind a fixed ID and a flags byte with QR=0, so each gets a reply.
    garbage = [bytes(rng.randrange(256) for _ in range(n)) for n in (12, 30, 200)]
    follow = dns.message.make_query("www.example.com", "A")
    async with await open_stream(where) as stream:
        await stream.send_all(b"".join(frame(b"\x99\x01\x00" + g[3:]) for g in garbage))
        await stream.send_all(frame(follow.to_wire()))
        buffer = bytearray()
        with trio.fail_after(ANSWER_WAIT):
            replies = [await read_frame(stream, buffer) for _ in range(len(garbage) + 1)]
    *errors, last = replies
    for reply in errors:
        assert reply is not None
        assert reply[:2] == b"\x99\x01"
        assert reply[3] & 0xF in (dns.rcode.FORMERR, dns.rcode.NOTIMP)
    assert last is not None
    assert addresses(dns.message.from_wire(last)) == ["192.0.2.10"]
    await assert_serving(where)


async def test_raw_garbage_without_framing_is_closed_and_server_keeps_serving(
    where: Where,
) -> None:
    async with await open_stream(where) as stream:
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n" * 3)
        # "GE" reads as a 18245-byte frame that never completes: the read timeout
        # (5 s here) will close it; meanwhile everyone else is served.
        await assert_serving(where)


@pytest.fixture
async def quick(nursery: trio.Nursery, tmp_path: Path, mode: str) -> Where:
    """A server with short TCP timeouts and room for only two connections."""
    config = make_config(tmp_path, mode=mode, idle=0.3, read=0.3, max_conn=2)
    return address(await start_server(nursery, config))


async def wait_closed(stream: trio.SocketStream) -> None:
    with trio.fail_after(ANSWER_WAIT):
        while True:
            try:
                if not await stream.receive_some(65536):
                    return
            except trio.BrokenResourceError:
                return


async def test_idle_connection_is_closed_after_idle_timeout(quick: Where) -> None:
    async with await open_stream(quick) as stream:
        await wait_closed(stream)  # never sent anything
    await assert_serving(quick)


async def test_half_sent_message_is_closed_after_read_timeout(quick: Where) -> None:
    async with await open_stream(quick) as stream:
        await stream.send_all(b"\x00\x40\x12")  # promises 64 bytes, sends 1
        await wait_closed(stream)
    await assert_serving(quick)


@pytest.fixture
async def capped(nursery: trio.Nursery, tmp_path: Path, mode: str) -> Where:
    """Room for two connections, and timeouts far longer than any test."""
    config = make_config(tmp_path, mode=mode, idle=600, read=600, max_conn=2)
    return address(await start_server(nursery, config))


async def test_connection_cap_evicts_the_quietest_so_new_clients_are_served(
    capped: Where,
) -> None:
    first = await open_stream(capped)
    await trio.testing.wait_all_tasks_blocked()
    second = await open_stream(capped)
    await trio.testing.wait_all_tasks_blocked()
    try:
        # Both slots are taken by silent clients; a new one (TCP, then UDP) is still served.
        await assert_serving(capped)
        # ...because the quietest connection, the first, was closed to make room.
        await wait_closed(first)
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_client_that_resets_while_answers_are_sent_ends_only_its_connection(
    where: Where,
) -> None:
    # Thousands of pipelined queries with ~3 KB answers, never read: the server's
    # writes block, then the close with unread data resets the connection under it.
    query = frame(dns.message.make_query("big.example.com", "AAAA").to_wire())
    sock = trio.socket.socket()
    sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 1024)
    await sock.connect(where)
    stream = trio.SocketStream(sock)
    await stream.send_all(query * 3000)
    await trio.testing.wait_all_tasks_blocked()
    sock.setsockopt(
        trio.socket.SOL_SOCKET, trio.socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
    )
    await stream.aclose()  # linger 0: an RST
    await assert_serving(where)


async def test_empty_messages_do_not_keep_an_idle_connection_open(quick: Where) -> None:
    async with await open_stream(quick) as stream:
        closed = trio.Event()

        async def chatter() -> None:
            # A client pacing zero-length messages: none of them is ever answered.
            with trio.move_on_after(ANSWER_WAIT):
                while not closed.is_set():
                    try:
                        await stream.send_all(b"\x00\x00")
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        return
                    await trio.sleep(0.05)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(chatter)
            await wait_closed(stream)  # the idle timeout (0.3 s) still closes it
            closed.set()
    await assert_serving(quick)
