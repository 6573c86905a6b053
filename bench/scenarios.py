"""What each measured run does to the server: table size, reloads, injected bug.

``steady``, ``reload`` and ``bug`` are load runs at a fixed rate (one server at
a time).  ``peers`` compares the maximum queries per second of cowdns and other
servers on one zone; ``memory`` follows cowdns' resident size through reloads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["DEFAULT_KINDS", "SCENARIO_KINDS", "Scenario", "build_scenarios", "size_label"]

SCENARIO_KINDS = ("steady", "reload", "bug", "peers", "memory")
DEFAULT_KINDS = ("steady", "reload", "bug")


def size_label(size: int) -> str:
    """10000 -> "10k", 1000000 -> "1M", 250 -> "250"."""
    if size >= 1_000_000 and size % 1_000_000 == 0:
        return f"{size // 1_000_000}M"
    if size >= 1000 and size % 1000 == 0:
        return f"{size // 1000}k"
    return str(size)


@dataclass(frozen=True)
class Scenario:
    """One row group of the results: every server runs it in turn on identical input."""

    name: str
    """Short id used in tables, file names and the JSON (``reload-100k``)."""
    title: str
    size: int
    reload_interval: float | None
    """Seconds between table changes (the bench rewrites the file, then SIGHUP); None: none."""
    inject_bug: bool = False
    """Start the server with the original missing read-unlock bug injected."""
    kind: str = "load"
    """``load`` (fixed-rate dnsperf run), ``peers`` or ``memory``."""


def build_scenarios(
    kinds: Sequence[str], sizes: Sequence[int], reload_interval: float
) -> list[Scenario]:
    """The scenarios in run order: steady, one reload scenario per size, the bug, then
    ``peers`` (on the smallest size) and ``memory`` (on the largest)."""
    smallest = min(sizes)
    scenarios: list[Scenario] = []
    if "steady" in kinds:
        scenarios.append(
            Scenario(
                "steady", f"steady load, {size_label(smallest)} names, no reload", smallest, None
            )
        )
    if "reload" in kinds:
        for size in sizes:
            label = size_label(size)
            scenarios.append(
                Scenario(
                    f"reload-{label}",
                    f"{label} names, table changed every {reload_interval:g}s",
                    size,
                    reload_interval,
                )
            )
    if "bug" in kinds:
        scenarios.append(
            Scenario(
                "bug",
                f"injected missing read-unlock, {size_label(smallest)} names,"
                f" table changed every {reload_interval:g}s",
                smallest,
                reload_interval,
                inject_bug=True,
            )
        )
    if "peers" in kinds:
        scenarios.append(
            Scenario(
                "peers",
                f"max qps, {size_label(smallest)} names, A/AAAA/NXDOMAIN mix, no rate limit",
                smallest,
                None,
                kind="peers",
            )
        )
    if "memory" in kinds:
        largest = max(sizes)
        scenarios.append(
            Scenario(
                f"memory-{size_label(largest)}",
                f"resident size with {size_label(largest)} names, steady and during reloads",
                largest,
                None,
                kind="memory",
            )
        )
    return scenarios
