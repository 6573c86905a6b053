"""Tables and query files: what the measured servers serve and what dnsperf asks.

A table of ``size`` names ``h<i>.bench.example.com`` is written in two
variants that differ in the addresses of every tenth name.  A *mixed* workload
(the peer comparison) also gives every fourth name an IPv6 address and asks a
mix of A, AAAA and NXDOMAIN queries; the same data is written as a zone file
for the other servers.  A reload swaps the
served file to the other variant, so each reload really changes the data (the
file store skips a reload whose bytes did not change) while the bench itself
spends almost nothing on it: the variants are written once, and a swap is a
file copy plus an atomic rename.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ORIGIN", "Workload", "make_workload", "write_zone"]

ORIGIN = "example.com"
_SUFFIX = f"bench.{ORIGIN}"
_QUERY_LINES = 100_000
NS_NAME = f"ns1.{ORIGIN}"
NS_ADDRESS = "192.0.2.53"


def _name(index: int) -> str:
    return f"h{index}.{_SUFFIX}"


def _address(index: int, variant: int) -> str:
    # Every tenth name moves by 100 in the second variant; the rest stay put.
    host = index % 100 + 1
    if variant == 1 and index % 10 == 0:
        host += 100
    return f"192.0.2.{host}"


def _address6(index: int) -> str | None:
    return f"2001:db8::{index:x}" if index % 4 == 0 else None


def _addresses(index: int, variant: int, mixed: bool) -> list[str]:
    v6 = _address6(index) if mixed else None
    return [_address(index, variant)] + ([v6] if v6 else [])


def _write_table(path: Path, size: int, variant: int, mixed: bool) -> None:
    table = {_name(i): _addresses(i, variant, mixed) for i in range(size)}
    table[NS_NAME] = [NS_ADDRESS]  # glue for the zone's NS, so every server answers alike
    with path.open("w", encoding="utf-8") as out:
        json.dump(table, out, separators=(",", ":"))


@dataclass
class Workload:
    """The files of one table size inside a work directory."""

    size: int
    table: Path
    """The file the server reads (its store URL points here)."""
    queries: Path
    """dnsperf input: one ``name A`` line per query, names drawn from the table."""
    variants: tuple[Path, Path]
    served_variant: int = 0
    mixed: bool = False
    """Names also have AAAA records (every fourth), queries mix A, AAAA and NXDOMAIN."""

    def zone_file(self) -> Path:
        """The served variant as a zone file for ``example.com`` (NSD, Knot, Twisted)."""
        path = self.table.with_name(f"{ORIGIN}.v{self.served_variant}.zone")
        if not path.exists():
            write_zone(path, self.size, self.served_variant, self.mixed)
        return path

    def reset(self) -> None:
        """Serve the first variant again (before a new server starts)."""
        self._install(0)

    def change(self) -> None:
        """Switch the served file to the other variant: one atomic rename."""
        self._install(1 - self.served_variant)

    def _install(self, variant: int) -> None:
        staging = self.table.with_suffix(".staging")
        shutil.copyfile(self.variants[variant], staging)
        os.replace(staging, self.table)
        self.served_variant = variant


def write_zone(path: Path, size: int, variant: int, mixed: bool) -> None:
    """The same data as the table, with the SOA and NS the bench's cowdns config gives."""
    lines = [
        f"$ORIGIN {ORIGIN}.",
        "$TTL 300",
        f"@ 3600 IN SOA {NS_NAME}. hostmaster.{ORIGIN}. 1 7200 900 1209600 300",
        f"@ IN NS {NS_NAME}.",
        f"{NS_NAME}. IN A {NS_ADDRESS}",
    ]
    for i in range(size):
        for address in _addresses(i, variant, mixed):
            rtype = "AAAA" if ":" in address else "A"
            lines.append(f"{_name(i)}. IN {rtype} {address}")
    path.write_text("\n".join(lines) + "\n", encoding="ascii")


def _query(rng: random.Random, size: int, mixed: bool) -> str:
    if not mixed:
        return f"{_name(rng.randrange(size))} A\n"
    draw = rng.random()
    if draw < 0.8:
        return f"{_name(rng.randrange(size))} A\n"
    if draw < 0.9:  # a quarter of the names have one: the rest get NOERROR with no answer
        return f"{_name(rng.randrange(size))} AAAA\n"
    return f"x{rng.randrange(size)}.{_SUFFIX} A\n"  # NXDOMAIN


def make_workload(directory: Path, size: int, *, seed: int = 53, mixed: bool = False) -> Workload:
    """Write both table variants and a query file for ``size`` names under ``directory``.

    ``mixed``: 80 % A, 10 % AAAA (a quarter of the names have one), 10 % A for
    names that do not exist, instead of A queries only.
    """
    directory.mkdir(parents=True, exist_ok=True)
    variants = (directory / "table-a.json", directory / "table-b.json")
    for variant, path in enumerate(variants):
        _write_table(path, size, variant, mixed)
    rng = random.Random(seed)
    queries = directory / "queries.txt"
    lines = min(_QUERY_LINES, max(size, 1000))
    with queries.open("w", encoding="ascii") as out:
        out.writelines(_query(rng, size, mixed) for _ in range(lines))
    workload = Workload(size, directory / "table.json", queries, variants, mixed=mixed)
    workload.reset()
    return workload
