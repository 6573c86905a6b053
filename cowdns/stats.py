"""Query-path counters: plain integers bumped on the hot path, read by the metrics exporter.

Nothing here locks or allocates per query beyond a dict increment: the exporter
turns these into Prometheus families at scrape time.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["LATENCY_BUCKETS", "QueryStats"]

# Upper bounds in seconds of the answer-latency histogram (time spent inside cowdns
# from having the bytes to having the reply, not the network).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
_BOUNDS_NS = tuple(int(b * 1e9) for b in LATENCY_BUCKETS)


@dataclass
class QueryStats:
    """Counters of one engine since start."""

    answers: Counter[tuple[str, int, int]] = field(default_factory=Counter)
    """(transport, qtype, rcode) → answers sent."""
    truncated: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    """transport → messages dropped without reply (short, or QR=1)."""
    malformed: Counter[str] = field(default_factory=Counter)
    """transport → messages answered FORMERR/NOTIMP/BADVERS by the wire policy."""
    cache_hits: int = 0
    cache_misses: int = 0
    cache_carried: int = 0
    """Replies taken over from the previous table generation (they count as hits too)."""
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum_ns: int = 0

    def observe_latency(self, elapsed_ns: int) -> None:
        self.latency_counts[bisect_left(_BOUNDS_NS, elapsed_ns)] += 1
        self.latency_sum_ns += elapsed_ns
