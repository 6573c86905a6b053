"""Sockets: UDP and TCP listeners, framing, timeouts and the connection cap.

UDP is read in batches: after the socket turns readable we receive without
blocking until it is empty, answering each datagram as it comes, and only then
wait again.  One awaited receive per packet would cost a trip through the
scheduler for every query.

TCP follows RFC 7766: many queries per connection, pipelined; a message may
arrive in any number of pieces.  A connection waiting for its next query is
closed after ``tcp_idle_timeout``; a message that has started must be complete
within ``tcp_read_timeout``.  When ``tcp_max_connections`` are open, a new
connection evicts the one that has been quiet the longest, so idle or hostile
clients cannot lock others out.
"""

from __future__ import annotations

import errno
import itertools
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from cowdns.filters.base import Transport

__all__ = ["Handler", "Listener", "bind_listeners", "serve_tcp", "serve_udp"]

log = logging.getLogger("cowdns.server")

Handler = Callable[[bytes, Transport], Awaitable[bytes | None]]
"""Answers one message: reply bytes, or None to send nothing."""

# Yield to other tasks at least this often while draining a busy UDP socket.
UDP_BATCH = 64
_LENGTH = struct.Struct("!H")


@dataclass
class Listener:
    """One address served on both UDP and TCP."""

    host: str
    port: int
    udp: socket.socket
    tcp: trio.socket.SocketType

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


async def bind_listeners(
    addresses: tuple[tuple[str, int], ...], *, reuse_port: bool = False
) -> list[Listener]:
    """Bind UDP and TCP on each address; port 0 picks one free port for both."""
    listeners: list[Listener] = []
    try:
        for host, port in addresses:
            listeners.append(await _bind_pair(host, port, reuse_port=reuse_port))
    except BaseException:
        for listener in listeners:
            listener.close()
        raise
    return listeners


async def _bind_pair(host: str, port: int, *, reuse_port: bool) -> Listener:
    family = _family(host)
    for _attempt in range(50 if port == 0 else 1):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        tcp = trio.socket.socket(family, socket.SOCK_STREAM)
        try:
            if reuse_port:
                udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            udp.bind((host, port))
            bound = udp.getsockname()[1]
            await tcp.bind((host, bound))
            tcp.listen(128)
        except OSError as exc:
            udp.close()
            tcp.close()
            if port == 0 and exc.errno == errno.EADDRINUSE:
                continue  # the UDP port's TCP twin is taken; try another
            raise
        udp.setblocking(False)
        return Listener(host, bound, udp, tcp)
    raise OSError(errno.EADDRINUSE, f"no port free for both UDP and TCP on {host}")


async def serve_udp(
    sock: socket.socket,
    handler: Handler,
    answer_now: Callable[[bytes, Transport], bytes | None] | None = None,
) -> None:
    """Answer datagrams on ``sock`` forever (until cancelled).

    ``answer_now``, when given, answers without awaiting (copy-on-write mode),
    so a busy socket is drained with no trip through the scheduler per packet.
    """
    recvfrom = sock.recvfrom
    sendto = sock.sendto
    while True:
        await trio.lowlevel.wait_readable(sock)
        for _ in range(UDP_BATCH):
            try:
                data, peer = recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                # ICMP errors from earlier sends surface here (ECONNREFUSED); not fatal.
                log.debug("udp receive error: %s", exc)
                continue
            if answer_now is not None:
                reply = answer_now(data, "udp")
            else:
                reply = await handler(data, "udp")
            if reply is not None:
                try:
                    sendto(reply, peer)
                except OSError as exc:
                    # A full send buffer or an unreachable peer drops this answer only.
                    log.debug("udp send to %s failed: %s", peer, exc)
        await trio.lowlevel.checkpoint()


@dataclass(eq=False)
class _Connection:
    scope: trio.CancelScope
    last_active: float = field(default_factory=trio.current_time)


class _ConnectionTable:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[int, _Connection] = {}
        self._ids = itertools.count()

    def add(self, conn: _Connection) -> int:
        while len(self.open) >= self.limit:
            victim_id = min(self.open, key=lambda i: self.open[i].last_active)
            victim = self.open.pop(victim_id)
            victim.scope.cancel()
            log.info("tcp connection limit %d reached; closed the quietest connection", self.limit)
        conn_id = next(self._ids)
        self.open[conn_id] = conn
        return conn_id

    def remove(self, conn_id: int) -> None:
        self.open.pop(conn_id, None)


async def serve_tcp(
    sock: trio.socket.SocketType,
    handler: Handler,
    *,
    idle_timeout: float,
    read_timeout: float,
    max_connections: int,
) -> None:
    """Accept and serve TCP connections on ``sock`` forever (until cancelled)."""
    table = _ConnectionTable(max_connections)
    listener = trio.SocketListener(sock)

    async def connection(stream: trio.SocketStream) -> None:
        conn = _Connection(trio.CancelScope())
        conn_id = table.add(conn)
        try:
            with conn.scope:
                await _serve_connection(stream, handler, conn, idle_timeout, read_timeout)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            # The peer reset or closed while we wrote: that connection ends, nothing else.
            log.debug("tcp connection ended: %s", exc)
        except Exception:
            # The server is the single guard: one connection's bug must not end the others.
            log.exception("internal error on a tcp connection; closed it")
        finally:
            table.remove(conn_id)
            with trio.move_on_after(1) as cleanup:
                cleanup.shield = True
                await stream.aclose()

    await trio.serve_listeners(connection, [listener])


async def _serve_connection(
    stream: trio.SocketStream,
    handler: Handler,
    conn: _Connection,
    idle_timeout: float,
    read_timeout: float,
) -> None:
    buffer = bytearray()
    message_started = 0.0
    # Only answered messages count as activity: a client sending empty or dropped
    # messages must not keep an idle slot, nor look busy to the eviction.
    answered_at = trio.current_time()
    while True:
        # Answer every complete message already buffered (pipelining).
        while len(buffer) >= 2:
            length = _LENGTH.unpack_from(buffer)[0]
            if len(buffer) < 2 + length:
                break
            data = bytes(buffer[2 : 2 + length])
            del buffer[: 2 + length]
            message_started = 0.0
            reply = await handler(data, "tcp")
            if reply is not None:
                with trio.move_on_after(read_timeout) as send:
                    await stream.send_all(_LENGTH.pack(len(reply)) + reply)
                if send.cancelled_caught:
                    return
                answered_at = conn.last_active = trio.current_time()
        if buffer:
            if not message_started:  # a new message has begun
                message_started = trio.current_time()
            deadline = message_started + read_timeout
        else:
            message_started = 0.0
            deadline = answered_at + idle_timeout
        with trio.move_on_at(deadline):
            try:
                chunk = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not chunk:
                return
            buffer += chunk
            continue
        return  # idle or read timeout
