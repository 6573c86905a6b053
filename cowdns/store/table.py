"""Parse and validate IP-table entries: pure functions shared by every source.

A store hands us ``{key: value}`` where ``value`` is a list of addresses or
``{"ips": [...], "ttl": N}``.  Each key is validated alone; a bad key becomes an
:class:`~cowdns.errors.EntryError` naming it and the rest of the table loads.

Besides the entries, a table keeps ``ancestors``: for every name strictly between
a zone origin and a table name, how many table names lie below it.  A name in
``ancestors`` but not in ``entries`` is an empty non-terminal, so "exists but has
no data" is one dict lookup; the counts make single-key updates (an etcd put or
delete) cheap without a walk over the table.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

import dns.exception
import dns.name

from cowdns.errors import EntryError
from cowdns.store.zones import Zone, Zones, name_key

__all__ = [
    "MAX_ADDRESSES",
    "MAX_TTL",
    "Entry",
    "TableBuilder",
    "build_table",
    "entry_to_json",
    "parse_entry",
    "parse_name",
]

MAX_TTL = 2**31 - 1
# 2,000 AAAA records are 56 KB on the wire: the largest answer a TCP message can carry.
MAX_ADDRESSES = 2000

# Names that are already lower-case LDH (plus underscore) labels skip dnspython's parser;
# anything else (escapes, Unicode, upper case) takes the full path.
_PLAIN_NAME = re.compile(r"(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)+")


@dataclass(frozen=True, slots=True)
class Entry:
    """One table name: its IPv4 and IPv6 addresses (canonical text) and optional own TTL."""

    v4: tuple[str, ...]
    v6: tuple[str, ...]
    ttl: int | None = None


def parse_name(key: str) -> dns.name.Name:
    """A table key as an absolute name; Unicode names become A-labels (IDNA)."""
    if not isinstance(key, str) or not key.strip():
        raise EntryError(str(key), "empty name")
    text = key.strip()
    if text == ".":
        raise EntryError(key, "the root is not a table name")
    try:
        name = dns.name.from_text(text) if text.isascii() else dns.name.from_unicode(text)
    except (dns.exception.DNSException, UnicodeError, ValueError) as exc:
        raise EntryError(key, f"not a valid DNS name ({exc})") from exc
    return name


def _key_of(key: str, zones: Zones) -> tuple[str, Zone]:
    """Canonical table key and enclosing zone of ``key``; raises EntryError."""
    if not isinstance(key, str):
        raise EntryError(str(key), "name must be a string")
    lowered = key.lower()
    if not lowered.endswith("."):
        lowered += "."
    zone: Zone | None
    if len(lowered) <= 254 and _PLAIN_NAME.fullmatch(lowered):
        canonical = lowered
        zone = zones.find_key(canonical)
    else:
        name = parse_name(key)
        if b"*" in name.labels:
            raise EntryError(key, "wildcard names are not supported; list each name")
        canonical = name_key(name)
        zone = zones.find(name)
    if zone is None:
        raise EntryError(key, "name is outside every configured zone")
    return canonical, zone


def _parse_ips(key: str, ips: object) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if isinstance(ips, str) or not isinstance(ips, list | tuple):
        raise EntryError(key, 'addresses must be a list such as ["192.0.2.1"]')
    if not ips:
        raise EntryError(key, "no addresses")
    if len(ips) > MAX_ADDRESSES:
        raise EntryError(
            key, f"{len(ips)} addresses; at most {MAX_ADDRESSES} fit in one answer (64 KB over TCP)"
        )
    v4: list[str] = []
    v6: list[str] = []
    for ip in ips:
        if not isinstance(ip, str):
            raise EntryError(key, f"address {ip!r} is not a string")
        try:
            # Strict dotted quads (no leading zeros, no spaces) are already canonical;
            # inet_pton checks them ten times faster than ipaddress.
            socket.inet_pton(socket.AF_INET, ip)
        except (OSError, ValueError):  # ValueError: NUL bytes, lone surrogates
            pass
        else:
            if ip not in v4:
                v4.append(ip)
            continue
        try:
            address = ipaddress.ip_address(ip.strip())
        except ValueError:
            raise EntryError(key, f"{ip!r} is not an IPv4 or IPv6 address") from None
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
            raise EntryError(key, f"{ip!r} has a zone index; a DNS address cannot carry one")
        text = address.compressed
        target = v4 if address.version == 4 else v6
        if text not in target:
            target.append(text)
    return tuple(v4), tuple(v6)


def parse_entry(key: str, value: object, zones: Zones) -> tuple[str, Entry]:
    """Validate one store entry; returns ``(canonical key, Entry)`` or raises EntryError."""
    canonical, _zone, entry = _parse(key, value, zones)
    return canonical, entry


def _parse(key: str, value: object, zones: Zones) -> tuple[str, Zone, Entry]:
    canonical, zone = _key_of(key, zones)
    ttl: int | None = None
    if isinstance(value, dict):
        unknown = set(value) - {"ips", "ttl"}
        if unknown:
            raise EntryError(key, f"unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        if "ips" not in value:
            raise EntryError(key, 'missing "ips"')
        raw_ttl = value.get("ttl")
        if raw_ttl is not None:
            if isinstance(raw_ttl, bool) or not isinstance(raw_ttl, int):
                raise EntryError(key, f"ttl {raw_ttl!r} is not an integer")
            if not 0 <= raw_ttl <= MAX_TTL:
                raise EntryError(key, f"ttl {raw_ttl} is out of range 0..{MAX_TTL}")
            ttl = raw_ttl
        ips = value["ips"]
    else:
        ips = value
    v4, v6 = _parse_ips(key, ips)
    return canonical, zone, Entry(v4, v6, ttl)


def entry_to_json(entry: Entry) -> object:
    """The store form of an entry (inverse of :func:`parse_entry`'s value)."""
    ips = [*entry.v4, *entry.v6]
    if entry.ttl is None:
        return ips
    return {"ips": ips, "ttl": entry.ttl}


def _ancestors(key: str, zone: Zone) -> Iterable[str]:
    """Names strictly between ``key`` and its zone origin (both excluded)."""
    if "\\" not in key:
        origin = zone.key
        stop = len(key) - len(origin)  # where the origin starts in key
        pos = key.find(".") + 1
        while 0 < pos < stop:
            yield key[pos:]
            pos = key.find(".", pos) + 1
        return
    name = dns.name.from_text(key)
    depth = len(zone.origin.labels)
    labels = name.labels
    for start in range(1, len(labels) - depth):
        yield dns.name.Name(labels[start:]).to_text().lower()


@dataclass
class TableBuilder:
    """Mutable working copy of a table: built off to the side, then frozen into a snapshot.

    ``from_table`` copies an existing table so that single-key updates never touch
    what readers see.
    """

    zones: Zones
    entries: dict[str, Entry] = field(default_factory=dict)
    ancestors: dict[str, int] = field(default_factory=dict)
    rejected: list[EntryError] = field(default_factory=list)
    # Equal entries share one object: big tables repeat the same addresses a lot.
    _pool: dict[Entry, Entry] = field(default_factory=dict, repr=False)

    @classmethod
    def from_table(
        cls, zones: Zones, entries: Mapping[str, Entry], ancestors: Mapping[str, int]
    ) -> TableBuilder:
        return cls(zones, dict(entries), dict(ancestors))

    def put(self, key: str, value: object) -> str | None:
        """Add or replace one entry; returns its canonical key, or None if it was rejected."""
        try:
            canonical, zone, entry = _parse(key, value, self.zones)
        except EntryError as exc:
            self.rejected.append(exc)
            return None
        if canonical not in self.entries:
            for ancestor in _ancestors(canonical, zone):
                self.ancestors[ancestor] = self.ancestors.get(ancestor, 0) + 1
        self.entries[canonical] = self._pool.setdefault(entry, entry)
        return canonical

    def delete(self, key: str) -> bool:
        """Remove one entry by store key; returns whether it was present."""
        try:
            canonical, zone = _key_of(key, self.zones)
        except EntryError:
            return False
        if self.entries.pop(canonical, None) is None:
            return False
        for ancestor in _ancestors(canonical, zone):
            left = self.ancestors[ancestor] - 1
            if left:
                self.ancestors[ancestor] = left
            else:
                del self.ancestors[ancestor]
        return True


async def build_table(
    zones: Zones,
    raw: Mapping[str, object],
    checkpoint: Callable[[], Awaitable[None]],
    *,
    chunk: int = 100,
) -> TableBuilder:
    """Validate a whole raw table, yielding to the event loop every ``chunk`` keys.

    Readers keep being answered from the published table while this runs.
    """
    builder = TableBuilder(zones)
    entries = builder.entries
    duplicates = 0
    for count, (key, value) in enumerate(raw.items(), 1):
        size = len(entries)
        canonical = builder.put(key, value)
        if canonical is not None and len(entries) == size:
            # Two keys of one object differ only in case or the final dot.
            duplicates += 1
            first = _first_key(raw, canonical, key) if duplicates <= 10 else None
            builder.rejected.append(
                EntryError(key, f"same name as {first!r}; the later entry wins")
                if first is not None
                else EntryError(key, "same name as an earlier entry; the later entry wins")
            )
        if count % chunk == 0:
            await checkpoint()
    return builder


def _first_key(raw: Mapping[str, object], canonical: str, later: str) -> str | None:
    for key in raw:
        if key == later:
            return None
        if isinstance(key, str) and key.lower().rstrip(".") + "." == canonical:
            return key
    return None
