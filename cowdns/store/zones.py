"""Zones: what the config says we are authoritative for.

Zones are static for a process's life; the IP table changes under them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import dns.name

__all__ = ["Soa", "Zone", "Zones", "name_key"]


def name_key(name: dns.name.Name) -> str:
    """The table key of an absolute name: lower-case presentation form with the final dot."""
    return name.to_text().lower()


@dataclass(frozen=True, slots=True)
class Soa:
    mname: dns.name.Name
    rname: dns.name.Name
    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int
    ttl: int

    @property
    def negative_ttl(self) -> int:
        """TTL of the SOA in negative answers (RFC 2308 §5): min(SOA TTL, SOA minimum)."""
        return min(self.ttl, self.minimum)


@dataclass(frozen=True, slots=True)
class Zone:
    origin: dns.name.Name
    ttl: int
    ns: tuple[dns.name.Name, ...]
    soa: Soa
    key: str = field(init=False, repr=False, compare=False)
    """The origin's table key, computed once: the loader compares against it per name."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", name_key(self.origin))


class Zones:
    """An immutable set of zones; finds the closest enclosing zone of a name."""

    __slots__ = ("_by_key", "_depths", "zones")

    def __init__(self, zones: tuple[Zone, ...]) -> None:
        self.zones = zones
        self._by_key = {zone.key: zone for zone in zones}
        # Deepest origins first, so a child zone wins over its parent.
        self._depths = tuple(sorted({len(z.origin.labels) for z in zones}, reverse=True))

    def find(self, name: dns.name.Name) -> Zone | None:
        """The zone whose origin is the longest suffix of ``name``, or None."""
        labels = name.labels
        for depth in self._depths:
            if depth > len(labels):
                continue
            key = dns.name.Name(labels[len(labels) - depth :]).to_text().lower()
            zone = self._by_key.get(key)
            if zone is not None:
                return zone
        return None

    def find_key(self, key: str) -> Zone | None:
        """Like :meth:`find` for a canonical key without escapes (``"www.example.com."``).

        Walks the key's suffixes, longest first, with string operations only: the
        table loader calls this for every name.
        """
        by_key = self._by_key
        pos = 0
        last = len(key) - 1
        while True:
            zone = by_key.get(key[pos:] if pos else key)
            if zone is not None:
                return zone
            dot = key.find(".", pos)
            if dot < 0 or dot >= last:
                return None
            pos = dot + 1

    def __iter__(self) -> Iterator[Zone]:
        return iter(self.zones)

    def __len__(self) -> int:
        return len(self.zones)
