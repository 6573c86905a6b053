"""What each measured run does to the server: table size, reloads, injected bug."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["SCENARIO_KINDS", "Scenario", "build_scenarios", "size_label"]

SCENARIO_KINDS = ("steady", "reload", "bug")


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


def build_scenarios(
    kinds: Sequence[str], sizes: Sequence[int], reload_interval: float
) -> list[Scenario]:
    """The scenarios in run order: steady, one reload scenario per size, then the bug."""
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
    return scenarios
