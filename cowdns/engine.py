"""One message in, one answer out: wire policy, table view, filter chain, rendering.

The engine is the single guard of the query path: whatever a filter raises
becomes SERVFAIL for that query and a log line, never a dead server.

Copy-on-write mode reads ``holder.current`` once per query and takes no lock;
it answers synchronously (:meth:`Engine.answer_now`), so the UDP loop needs no
await per packet.  Locked mode holds the table's read lock around every
lookup, cache hit or miss.

Whole replies are cached per table generation (see :mod:`cowdns.fastpath`).
In copy-on-write mode the cache belongs to one snapshot's generation and is
replaced when another is published; in locked mode it is cleared by the
reloader while it holds the write lock.

Carry-over (copy-on-write mode): a reload of a big table would otherwise send
every query down the slow path at once.  Each cached reply remembers what it
was computed from (its name's entry and whether names exist below it); after a
publish, a miss may take the previous generation's reply for the same key if
the new snapshot gives that name the same entry and the same descendants —
then the normal path would produce the very same bytes.  Only the current
snapshot is ever referenced, never the old one, so a replaced table's memory is
freed at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from time import perf_counter_ns

import dns.message
import dns.rcode
import dns.rdatatype

from cowdns.fastpath import CacheKey, cache_key, splice
from cowdns.filters.base import Answer, Request, Transport
from cowdns.filters.chain import resolve
from cowdns.stats import QueryStats
from cowdns.store.locked import LockedTable
from cowdns.store.snapshot import SnapshotHolder, TableView
from cowdns.store.table import Entry
from cowdns.wire import decode, encode, error_response, render, size_limit

__all__ = ["Engine", "leaky_lookup"]

log = logging.getLogger("cowdns.engine")

_ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)
_TC = 0x0200

AnswerHook = Callable[[Request, Answer, bytes], None]
# What a cached reply was computed from: the name's table key, its entry and whether
# names exist below it.  A reply depends on nothing else of the table (apex NS
# answers, which carry glue, have no basis and are never carried over).
_Basis = tuple[str, Entry | None, bool]
# Cached reply bytes (ID zero), its rcode (for the counters) and its basis.
_Cached = tuple[bytes, int, _Basis | None]
# Reply bytes after the ID, the counter label (transport, qtype, rcode), and TC.
_Exact = tuple[bytes, tuple[str, int, int], bool]


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
        cache_size: int = 100_000,
    ) -> None:
        self.table = table
        self.max_payload = max_payload
        self.inject_bug = inject_bug
        self.cache_size = cache_size
        self.stats = QueryStats()
        self.on_answer: list[AnswerHook] = []
        self._cache: dict[CacheKey, _Cached] = {}
        self._previous: dict[CacheKey, _Cached] = {}
        self._exact: dict[str, dict[bytes, _Exact]] = {"udp": {}, "tcp": {}}
        self._generation = -1
        self.answer_now: Callable[[bytes, Transport], bytes | None] | None = None
        if isinstance(table, LockedTable):
            table.on_install.append(lambda _generation: self._clear_caches())
        else:
            self.answer_now = self._answer_cow

    def _answer_cow(self, data: bytes, transport: Transport) -> bytes | None:
        assert isinstance(self.table, SnapshotHolder)
        snapshot = self.table.current  # read once: this query's whole table
        if snapshot.generation != self._generation:
            previous = self._cache
            self._clear_caches()
            self._previous = previous
            self._generation = snapshot.generation
        return self._answer(data, transport, snapshot)

    async def handle(self, data: bytes, transport: Transport) -> bytes | None:
        """Answer one message: reply bytes, or None to send nothing."""
        table = self.table
        if not isinstance(table, LockedTable):
            return self._answer_cow(data, transport)
        if self.inject_bug == "missing-runlock":
            request = decode(data, transport, self.max_payload)
            if isinstance(request, Request) and request.qtype in _ADDRESS_TYPES:
                await leaky_lookup(table, request.key)
        async with table.reading() as view:
            return self._answer(data, transport, view)

    def _answer(self, data: bytes, transport: Transport, view: TableView) -> bytes | None:
        started = perf_counter_ns()
        stats = self.stats
        if self.on_answer:
            # Someone wants to see every answer (--log-queries): no cache shortcuts.
            return self._uncached(data, transport, view, started)
        # First level: the very same bytes after the ID were answered before.
        exact = self._exact[transport]
        raw = data[2:]
        hit = exact.get(raw)
        if hit is not None:
            stats.cache_hits += 1
            stats.answers[hit[1]] += 1
            if hit[2]:
                stats.truncated[transport] += 1
            stats.observe_latency(perf_counter_ns() - started)
            return data[:2] + hit[0]
        # Second level: the same question in another letter case, ID or option set.
        key = cache_key(data, transport, self.max_payload)
        if key is not None:
            cached = self._cache.get(key)
            if cached is None and self._previous:
                cached = self._carry(key, view)
            if cached is not None:
                stats.cache_hits += 1
                reply = splice(data, len(key[0]) + 16, cached[0])
                self._remember(exact, raw, reply, (transport, key[1], cached[1]))
                self._count(transport, key[1], cached[1], reply, started)
                return reply
            stats.cache_misses += 1
        answered, qtype, rcode, cacheable, basis = self._normal(data, transport, view)
        if answered is None:
            stats.dropped[transport] += 1
            return None
        if key is not None and cacheable:
            self._store(key, (b"\x00\x00" + answered[2:], rcode, basis))
            self._remember(exact, raw, answered, (transport, qtype, rcode))
        self._count(transport, qtype, rcode, answered, started)
        return answered

    def _uncached(
        self, data: bytes, transport: Transport, view: TableView, started: int
    ) -> bytes | None:
        answered, qtype, rcode, _cacheable, _basis = self._normal(data, transport, view)
        if answered is None:
            self.stats.dropped[transport] += 1
            return None
        self._count(transport, qtype, rcode, answered, started)
        return answered

    @property
    def cache_entries(self) -> int:
        """Replies in the response cache now (second level: one per distinct question)."""
        return len(self._cache)

    def _remember(
        self, exact: dict[bytes, _Exact], raw: bytes, reply: bytes, label: tuple[str, int, int]
    ) -> None:
        if len(exact) >= self.cache_size:
            del exact[next(iter(exact))]
        exact[raw] = (reply[2:], label, bool(reply[2] << 8 & _TC))

    def _store(self, key: CacheKey, cached: _Cached) -> None:
        cache = self._cache
        if len(cache) >= self.cache_size:
            del cache[next(iter(cache))]  # oldest first: bounded, O(1)
        cache[key] = cached

    def _carry(self, key: CacheKey, view: TableView) -> _Cached | None:
        """The previous generation's reply for ``key``, if this table gives the same one."""
        cached = self._previous.get(key)
        if cached is None or cached[2] is None:
            return None
        name, entry, below = cached[2]
        now = view.lookup(name)
        if (now is entry or now == entry) and view.has_descendants(name) == below:
            self.stats.cache_carried += 1
            self._store(key, cached)
            return cached
        return None

    def _clear_caches(self) -> None:
        self._cache = {}
        self._previous = {}
        self._exact = {"udp": {}, "tcp": {}}

    def _count(
        self, transport: Transport, qtype: int, rcode: int, reply: bytes, started: int
    ) -> None:
        stats = self.stats
        stats.answers[(transport, qtype, rcode)] += 1
        if reply[2] << 8 & _TC:
            stats.truncated[transport] += 1
        stats.observe_latency(perf_counter_ns() - started)

    def _normal(
        self, data: bytes, transport: Transport, view: TableView
    ) -> tuple[bytes | None, int, int, bool, _Basis | None]:
        """The normal path: reply (None: drop it), qtype, rcode, cacheable, and its basis."""
        decoded = decode(data, transport, self.max_payload)
        if decoded is None:
            return None, 0, 0, False, None
        if isinstance(decoded, bytes):
            self.stats.malformed[transport] += 1
            return decoded, 0, decoded[3] & 0xF, False, None
        if isinstance(decoded, dns.message.Message):
            self.stats.malformed[transport] += 1
            error = encode(decoded, size_limit(transport, None, self.max_payload))
            qtype = decoded.question[0].rdtype if decoded.question else 0
            return error, qtype, decoded.rcode(), False, None
        request = decoded
        try:
            answer = resolve(request, view)
            reply = encode(render(request, answer, self.max_payload), request.payload)
        except Exception:
            log.exception("internal error answering %s; replying SERVFAIL", request.qname)
            failure = error_response(
                request.message, dns.rcode.SERVFAIL, self.max_payload, question=True
            )
            reply = encode(failure, request.payload)
            return reply, request.qtype, dns.rcode.SERVFAIL, False, None
        for hook in self.on_answer:
            hook(request, answer, reply)
        basis: _Basis | None = None
        if answer.by != "apex":  # apex NS answers carry glue: other names' entries
            basis = (request.key, view.lookup(request.key), view.has_descendants(request.key))
        return reply, request.qtype, answer.rcode, True, basis
