"""The etcd store: one key per name under a prefix, read over etcd's v3 JSON gateway.

Design notes:

* A full load reads the whole prefix at ONE revision, in pages: the first page
  fixes the revision, later pages ask for that revision explicitly, so a table
  of a million keys loads without one giant response and without mixing two
  states of the store.  A compaction that overtakes the paging is a
  :class:`~cowdns.errors.SourceError`; the reloader simply tries again later.
* ``fetch`` returns None when the prefix holds exactly what the caller last
  got: the last full load, plus the watch batches delivered since when the
  watch continued that load (it keeps the load's revision and key count up to
  date once ``on_changes`` returns, so a periodic reload after pushed changes
  costs one probe, not a full read).  The cluster revision cannot tell (any
  key anywhere bumps it), so the probe asks for "keys under the prefix
  modified after that revision" (limit 1) and the prefix's key count in one
  small request: the prefix is unchanged iff no key was modified since and
  the count is the same (a new or rewritten key always carries a higher
  mod_revision; without one, a changed prefix can only have lost keys).  etcd
  evaluates that filter by scanning the prefix on the server, which is still
  far cheaper than shipping it.
* ``watch`` starts at the served version + 1.  The version it reports with a
  batch is the highest ``mod_revision`` of the batch's events, not the
  response header's revision: while catching up, etcd stamps responses with
  the *current* revision although more history is still to come, and a watch
  restarted from that header would silently skip the rest.  etcd never splits
  one revision's events across responses, so "max mod_revision + 1" is a safe
  restart point.  Responses that arrive while ``on_changes`` is still busy are
  coalesced into the next call, because every call costs the reloader a copy
  of the table.
* Several endpoints: a request that cannot reach a member (connect error, a
  dropped connection before any answer, HTTP 503) goes to the next one, and
  the member that answered is remembered.  A watch stream that breaks after it
  was established is a SourceError: the reloader reloads in full (failing
  over) and watches again.
* No timeouts of our own except for connecting: deadlines are the caller's
  cancel scopes.  A watch stream is open-ended by nature.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from cowdns.errors import SourceError
from cowdns.store.sources import Change, Fetched, OnChanges

__all__ = ["EtcdSource", "RawPrefix", "prefix_end"]

# Connecting is the one step we bound ourselves: a member that does not accept a
# connection within this time is treated like a dead one and the next is tried.
_CONNECT_TIMEOUT = 5.0

# Ask etcd to cancel our watch when its member loses the leader (the gateway maps
# "Grpc-Metadata-*" headers to gRPC metadata; clientv3's WithRequireLeader does the
# same), so a partitioned member cannot leave us with a silent stream.
_WATCH_HEADERS = {"Grpc-Metadata-hasleader": "true"}

# Keys decoded between two checkpoints during a full load (a few milliseconds of
# work).  Decoding is pure Python, so a worker thread would hold the GIL most of
# the time and stall the event loop just the same; chunks with checkpoints, like
# the reloader's validation, keep queries flowing and need no thread.
_DECODE_CHUNK = 1000

# Watch responses queued while on_changes runs; beyond this the stream is not read
# and TCP pushes back on etcd.
_WATCH_BUFFER = 1024


def prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` that selects every key starting with ``prefix`` (etcd's rule)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"  # every key


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        return b""
    return base64.b64decode(text)


def _int(value: object) -> int:
    # The gateway renders int64 as JSON strings ("revision": "42"); omitted means 0.
    if isinstance(value, int | str):
        return int(value)
    return 0


def _value(raw: bytes) -> object:
    """A stored value as the table parser wants it.

    Non-JSON passes through as text, so the table validator rejects it with
    its key instead of the whole load failing.
    """
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return raw.decode("utf-8", errors="replace")
    except RecursionError:
        return "(JSON nested too deeply)"


@dataclass(frozen=True, slots=True)
class RawPrefix:
    """Everything under the prefix at one revision: stored bytes and mod_revision per name."""

    values: Mapping[str, bytes]
    mod_revisions: Mapping[str, int]
    revision: int


@dataclass(frozen=True, slots=True)
class _Page:
    items: list[tuple[str, bytes]]
    revision: int
    last_key: bytes | None
    more: bool


@dataclass(frozen=True, slots=True)
class _Batch:
    changes: list[Change]
    revision: int
    count_delta: int  # keys created minus keys deleted


class EtcdSource:
    """Reads the IP table from the keys under ``prefix``; each key ``<prefix><name>``.

    ``endpoints`` are client URLs such as ``http://127.0.0.1:2379``.  The version
    of a table is the etcd revision it was read at, as a decimal string.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        prefix: str,
        client: httpx.AsyncClient | None = None,
        page_size: int = 10000,
    ) -> None:
        if not endpoints:
            raise ValueError("EtcdSource needs at least one endpoint")
        if not prefix:
            raise ValueError("EtcdSource needs a non-empty key prefix")
        if page_size < 1:
            raise ValueError("page_size must be positive")
        self.endpoints = tuple(endpoint.rstrip("/") for endpoint in endpoints)
        self.prefix = prefix
        self.page_size = page_size
        self._prefix = prefix.encode("utf-8")
        self._range_end = prefix_end(self._prefix)
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(None, connect=_CONNECT_TIMEOUT)
        )
        self._current = 0
        # (revision, key count) of the last full load, for the "unchanged" probe.
        self._loaded: tuple[int, int] | None = None

    @property
    def description(self) -> str:
        return f"etcd:{','.join(self.endpoints)} prefix {self.prefix!r}"

    @property
    def endpoint(self) -> str:
        """The member currently used (the last one that answered)."""
        return self.endpoints[self._current]

    # -- the Source protocol ------------------------------------------------------

    async def fetch(self) -> Fetched | None:
        """Read the whole prefix at one revision; None if it is unchanged since the last load."""
        if self._loaded is not None and await self._unchanged(*self._loaded):
            return None
        entries: dict[str, object] = {}
        revision = await self._scan(entries, decode=True)
        self._loaded = (revision, len(entries))
        return Fetched(entries, str(revision))

    def forget_version(self) -> None:
        """Make the next fetch read the whole prefix even if it is unchanged."""
        self._loaded = None

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def watch(self, since: str, on_changes: OnChanges) -> None:
        """Deliver changes after revision ``since`` until cancelled.

        Raises SourceError when the watch cannot continue: ``since`` was
        compacted away, etcd cancelled the watch, or the stream broke.
        """
        try:
            start = int(since) + 1
        except ValueError:
            raise SourceError(f"{self.description}: cannot watch from version {since!r}") from None
        send, receive = trio.open_memory_channel[_Batch | SourceError](_WATCH_BUFFER)
        # While the watch continues the last full load, keep its (revision, count)
        # current, so that fetch() knows the caller's table is already up to date.
        tracked = self._loaded if self._loaded and self._loaded[0] == start - 1 else None
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read_watch, start, send)
            async with receive:
                async for item in receive:
                    # Take whatever else is already queued: one call for all of it.
                    batches: list[_Batch] = []
                    while True:
                        if isinstance(item, SourceError):
                            failure = item
                            break
                        batches.append(item)
                        try:
                            item = receive.receive_nowait()
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                    if batches:
                        changes = [change for batch in batches for change in batch.changes]
                        try:
                            await on_changes(changes, str(batches[-1].revision))
                        except Exception as exc:
                            failure = exc
                            break
                        if tracked is not None and self._loaded == tracked:
                            count = tracked[1] + sum(batch.count_delta for batch in batches)
                            tracked = self._loaded = (batches[-1].revision, count)
                        else:
                            tracked = None  # a fetch loaded something newer meanwhile
                    if failure is not None:
                        break
            nursery.cancel_scope.cancel()
        # Raised outside the nursery so that callers see the error itself, not a group.
        raise failure or SourceError(f"{self.description}: watch stream ended")

    # -- reading and writing raw keys (used by ``cowdns push``) -----------------------

    async def read_raw(self) -> RawPrefix:
        """Every key under the prefix, undecoded, at one revision."""
        items: dict[str, Any] = {}
        revision = await self._scan(items, decode=False)
        return RawPrefix(
            {name: value for name, (value, _mod) in items.items()},
            {name: mod for name, (_value, mod) in items.items()},
            revision,
        )

    async def write(
        self,
        puts: Mapping[str, bytes],
        deletes: Sequence[str],
        *,
        unchanged_since: int | None = None,
        expected: Mapping[str, int] | None = None,
    ) -> int | None:
        """Put and delete names in one transaction, guarded by compare-and-swap.

        ``unchanged_since``: apply only if no key under the prefix has a
        ``mod_revision`` above it (etcd checks that by scanning the prefix:
        fine once, too slow for every batch of a big push).  ``expected``:
        apply only if each named key still has that ``mod_revision`` (0: the
        key must not exist).  Returns the new revision, or None when a compare
        failed and nothing was written.  etcd caps the operations of one
        transaction (``--max-txn-ops``, 128 by default); compares are capped
        separately.
        """
        compare: list[dict[str, object]] = []
        if unchanged_since is not None:
            compare.append(
                {
                    "key": _b64(self._prefix),
                    "range_end": _b64(self._range_end),
                    "target": "MOD",
                    "result": "LESS",
                    "mod_revision": str(unchanged_since + 1),
                }
            )
        for name, mod_revision in (expected or {}).items():
            compare.append(
                {
                    "key": _b64(self._key(name)),
                    "target": "MOD",
                    "result": "EQUAL",
                    "mod_revision": str(mod_revision),
                }
            )
        success: list[dict[str, object]] = [
            {"request_put": {"key": _b64(self._key(name)), "value": _b64(value)}}
            for name, value in puts.items()
        ]
        success.extend({"request_delete_range": {"key": _b64(self._key(name))}} for name in deletes)
        answer = await self._post("/v3/kv/txn", {"compare": compare, "success": success})
        if not answer.get("succeeded"):
            return None
        return _int(_header(answer).get("revision"))

    # -- internals ----------------------------------------------------------------

    def _key(self, name: str) -> bytes:
        return self._prefix + name.encode("utf-8")

    def _name(self, key: bytes) -> str:
        return key[len(self._prefix) :].decode("utf-8", errors="replace")

    async def _unchanged(self, revision: int, count: int) -> bool:
        """Whether the prefix now holds exactly what it held at ``revision`` (``count`` keys)."""
        answer = await self._post(
            "/v3/kv/range",
            {
                "key": _b64(self._prefix),
                "range_end": _b64(self._range_end),
                "keys_only": True,
                "limit": 1,
                "min_mod_revision": str(revision + 1),
            },
        )
        now = _int(_header(answer).get("revision"))
        if now == revision:
            return True
        # "count" is the size of the whole range, before the min_mod_revision filter.
        # Were it ever the filtered count, a mismatch would only cost a full load.
        modified = answer.get("kvs")
        if modified or _int(answer.get("count")) != count:
            return False
        # Same content at a later revision: remember that, so the next probe is cheaper.
        self._loaded = (now, count)
        return True

    async def _scan(self, into: dict[str, Any], *, decode: bool) -> int:
        """Read the prefix page by page at one revision into ``into``; returns the revision."""
        start = self._prefix
        revision = 0
        while True:
            request: dict[str, object] = {
                "key": _b64(start),
                "range_end": _b64(self._range_end),
                "limit": self.page_size,
            }
            if revision:
                request["revision"] = str(revision)
            raw = await self._post_raw("/v3/kv/range", request)
            page = await self._decode_page(raw, decode)
            if not revision:
                revision = page.revision
            into.update(page.items)
            if not page.more or page.last_key is None:
                return revision
            start = page.last_key + b"\x00"

    async def _decode_page(self, raw: bytes, decode: bool) -> _Page:
        answer = _json_object(raw, f"{self.description}: range")
        kvs = answer.get("kvs") or []
        if not isinstance(kvs, list):
            raise SourceError(f"{self.description}: range answer without a key list")
        items: list[tuple[str, Any]] = []
        key = b""
        try:
            for count, kv in enumerate(kvs, 1):
                key = _unb64(kv.get("key"))
                value = _unb64(kv.get("value"))
                if decode:
                    items.append((self._name(key), _value(value)))
                else:
                    items.append((self._name(key), (value, _int(kv.get("mod_revision")))))
                if count % _DECODE_CHUNK == 0:
                    await trio.lowlevel.checkpoint()
        except (AttributeError, ValueError) as exc:
            raise SourceError(f"{self.description}: malformed range answer ({exc})") from None
        return _Page(
            items,
            _int(_header(answer).get("revision")),
            key if items else None,
            bool(answer.get("more")),
        )

    def _order(self) -> list[int]:
        """Endpoint indexes to try: the one that worked last, then the others in turn."""
        # A list, not a generator: a concurrent request may move _current meanwhile.
        count = len(self.endpoints)
        return [(self._current + step) % count for step in range(count)]

    async def _post(self, path: str, body: Mapping[str, object]) -> dict[str, Any]:
        return _json_object(await self._post_raw(path, body), f"{self.description}: {path}")

    async def _post_raw(self, path: str, body: Mapping[str, object]) -> bytes:
        """POST to the first member that answers; returns the body of a 200 answer."""
        failures: list[str] = []
        for index in self._order():
            url = self.endpoints[index] + path
            try:
                response = await self._client.post(url, json=body)
            except httpx.TransportError as exc:
                failures.append(f"{self.endpoints[index]}: {_transport_error(exc)}")
                continue
            if response.status_code == httpx.codes.SERVICE_UNAVAILABLE:
                failures.append(f"{self.endpoints[index]}: {_gateway_error(response)}")
                continue
            self._current = index
            if response.status_code != httpx.codes.OK:
                raise SourceError(f"{self.description}: {path}: {_gateway_error(response)}")
            return response.content
        raise SourceError(f"{self.description}: no member answered ({'; '.join(failures)})")

    async def _read_watch(
        self, start: int, send: trio.MemorySendChannel[_Batch | SourceError]
    ) -> None:
        """Run one watch stream, sending batches and finally the error that ended it."""
        body = {
            "create_request": {
                "key": _b64(self._prefix),
                "range_end": _b64(self._range_end),
                "start_revision": str(start),
            }
        }
        async with send:
            try:
                try:
                    await self._stream_watch(body, send)
                except SourceError as exc:
                    await send.send(exc)
                else:
                    await send.send(SourceError(f"{self.description}: watch stream ended"))
            except trio.BrokenResourceError:
                return  # watch() stopped listening: it is on its way out

    async def _stream_watch(
        self, body: Mapping[str, object], send: trio.MemorySendChannel[_Batch | SourceError]
    ) -> None:
        failures: list[str] = []
        for index in self._order():
            url = self.endpoints[index] + "/v3/watch"
            established = False
            try:
                async with self._client.stream(
                    "POST", url, json=body, headers=_WATCH_HEADERS
                ) as response:
                    if response.status_code == httpx.codes.SERVICE_UNAVAILABLE:
                        await response.aread()
                        failures.append(f"{self.endpoints[index]}: {_gateway_error(response)}")
                        continue
                    established = True
                    self._current = index
                    if response.status_code != httpx.codes.OK:
                        await response.aread()
                        raise SourceError(f"{self.description}: watch: {_gateway_error(response)}")
                    async for line in response.aiter_lines():
                        if line.strip():
                            batch = self._watch_batch(line)
                            if batch is not None:
                                await send.send(batch)
                    return
            except httpx.TransportError as exc:
                if established:
                    raise SourceError(
                        f"{self.description}: watch stream broke ({_transport_error(exc)})"
                    ) from exc
                failures.append(f"{self.endpoints[index]}: {_transport_error(exc)}")
        raise SourceError(f"{self.description}: no member answered ({'; '.join(failures)})")

    def _watch_batch(self, line: str) -> _Batch | None:
        """One watch response as a batch of changes; None for bookkeeping messages."""
        message = _json_object(line.encode("utf-8"), f"{self.description}: watch")
        if "error" in message:
            error = message["error"]
            detail = error.get("message", error) if isinstance(error, dict) else error
            raise SourceError(f"{self.description}: watch failed: {detail}")
        result = message.get("result")
        if not isinstance(result, dict):
            raise SourceError(f"{self.description}: watch answer without a result")
        compacted = _int(result.get("compact_revision"))
        if compacted:
            raise SourceError(
                f"{self.description}: watch start was compacted away"
                f" (oldest revision kept is {compacted}); a full load is needed"
            )
        if result.get("canceled"):
            reason = result.get("cancel_reason") or "no reason given"
            raise SourceError(f"{self.description}: etcd cancelled the watch ({reason})")
        events = result.get("events")
        if not events:
            return None  # "created" or a progress notification
        changes: list[Change] = []
        revision = 0
        count_delta = 0
        try:
            for event in events:
                kv = event["kv"]
                name = self._name(_unb64(kv.get("key")))
                revision = max(revision, _int(kv.get("mod_revision")))
                if event.get("type") == "DELETE":
                    changes.append(Change(name, None))
                    count_delta -= 1
                else:
                    changes.append(Change(name, _value(_unb64(kv.get("value")))))
                    if _int(kv.get("version")) == 1:
                        count_delta += 1  # a key's version restarts at 1 when it is created
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise SourceError(f"{self.description}: malformed watch event ({exc})") from None
        return _Batch(changes, revision, count_delta)


def _header(answer: Mapping[str, Any]) -> Mapping[str, Any]:
    header = answer.get("header")
    return header if isinstance(header, dict) else {}


def _json_object(raw: bytes, where: str) -> dict[str, Any]:
    try:
        answer = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"{where}: answer is not JSON ({exc})") from None
    if not isinstance(answer, dict):
        raise SourceError(f"{where}: answer is not a JSON object")
    return answer


def _gateway_error(response: httpx.Response) -> str:
    """The gateway's error message (``{"error": ..., "message": ...}``) or the HTTP status."""
    status = f"HTTP {response.status_code}"
    try:
        answer = json.loads(response.content)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return status
    if isinstance(answer, dict):
        message = answer.get("message") or answer.get("error")
        if isinstance(message, dict):
            message = message.get("message")
        if isinstance(message, str) and message:
            return f"{status}: {message}"
    return status


def _transport_error(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]
