"""Tables and query files: what the measured servers serve and what dnsperf asks.

A table of ``size`` names ``h<i>.bench.example.com`` is written in two
variants that differ in the addresses of every tenth name.  A reload swaps the
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

__all__ = ["ORIGIN", "Workload", "make_workload"]

ORIGIN = "example.com"
_SUFFIX = f"bench.{ORIGIN}"
_QUERY_LINES = 100_000


def _name(index: int) -> str:
    return f"h{index}.{_SUFFIX}"


def _address(index: int, variant: int) -> str:
    # Every tenth name moves by 100 in the second variant; the rest stay put.
    host = index % 100 + 1
    if variant == 1 and index % 10 == 0:
        host += 100
    return f"192.0.2.{host}"


def _write_table(path: Path, size: int, variant: int) -> None:
    table = {_name(i): [_address(i, variant)] for i in range(size)}
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


def make_workload(directory: Path, size: int, *, seed: int = 53) -> Workload:
    """Write both table variants and a query file for ``size`` names under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    variants = (directory / "table-a.json", directory / "table-b.json")
    for variant, path in enumerate(variants):
        _write_table(path, size, variant)
    rng = random.Random(seed)
    queries = directory / "queries.txt"
    lines = min(_QUERY_LINES, max(size, 1000))
    with queries.open("w", encoding="ascii") as out:
        out.writelines(f"{_name(rng.randrange(size))} A\n" for _ in range(lines))
    workload = Workload(size, directory / "table.json", queries, variants)
    workload.reset()
    return workload
