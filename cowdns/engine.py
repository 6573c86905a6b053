"""One message in, one answer out: wire policy, table view, filter chain, rendering.

The engine is the single guard of the query path: whatever a filter raises
becomes SERVFAIL for that query and a log line, never a dead server.

Copy-on-write mode reads ``holder.current`` once per query and takes no lock.
Locked mode holds the table's read lock around the whole chain.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import dns.message
import dns.rcode
import dns.rdatatype

from cowdns.filters.base import Answer, Request, Transport
from cowdns.filters.chain import resolve
from cowdns.store.locked import LockedTable
from cowdns.store.snapshot import SnapshotHolder
from cowdns.store.table import Entry
from cowdns.wire import decode, encode, error_response, render

__all__ = ["Engine", "leaky_lookup"]

log = logging.getLogger("cowdns.engine")

_ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)

AnswerHook = Callable[[Request, Answer, bytes], None]


async def leaky_lookup(table: LockedTable, key: str) -> Entry | None:
    """The original bug, on purpose (``--inject-bug missing-runlock``).

    Like the Go lookup it reproduces, it takes the read lock and returns early
    when it finds the name, skipping the unlock.  Harmless until a writer asks
    for the lock; then every later reader queues behind that writer forever.
    """
    await table.lock.acquire_read()  # lockcheck: ignore[missing-runlock demo]
    entry = table.lookup(key)
    if entry is not None:
        return entry
    table.lock.release_read()
    return None


class Engine:
    """Answers raw DNS messages from a copy-on-write holder or a locked table."""

    def __init__(
        self,
        table: SnapshotHolder | LockedTable,
        *,
        max_payload: int = 1232,
        inject_bug: str | None = None,
    ) -> None:
        self.table = table
        self.max_payload = max_payload
        self.inject_bug = inject_bug
        self.on_answer: list[AnswerHook] = []
        self.on_drop: list[Callable[[Transport], None]] = []

    async def handle(self, data: bytes, transport: Transport) -> bytes | None:
        decoded = decode(data, transport, self.max_payload)
        if decoded is None:
            for dropped in self.on_drop:
                dropped(transport)
            return None
        if isinstance(decoded, bytes):
            return decoded
        if isinstance(decoded, dns.message.Message):
            return encode(decoded, 65535 if transport == "tcp" else 512)
        request = decoded
        table = self.table
        try:
            if isinstance(table, SnapshotHolder):
                answer = resolve(request, table.current)
            else:
                if self.inject_bug == "missing-runlock" and request.qtype in _ADDRESS_TYPES:
                    await leaky_lookup(table, request.key)
                async with table.reading() as view:
                    answer = resolve(request, view)
            reply = encode(render(request, answer, self.max_payload), request.payload)
        except Exception:
            log.exception("internal error answering %s; replying SERVFAIL", request.qname)
            failure = error_response(
                request.message, dns.rcode.SERVFAIL, self.max_payload, question=True
            )
            return encode(failure, request.payload)
        for hook in self.on_answer:
            hook(request, answer, reply)
        return reply
