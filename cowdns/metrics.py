"""Prometheus metrics, read at scrape time from what the server already keeps.

Nothing here runs per query.  The query path bumps plain counters in
:class:`cowdns.stats.QueryStats`; a scrape turns them, the reloader's hooks'
tallies, the served table and the table lock's statistics into metric families
(a custom collector on a dedicated registry).  Reload accounting is done by
hooks the reloader calls once per reload, which is off the query path too.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import dns.rcode
import dns.rdatatype
import trio
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from cowdns import __version__
from cowdns.errors import EntryError
from cowdns.stats import LATENCY_BUCKETS
from cowdns.store.locked import LockedTable
from cowdns.store.reloader import ReloadResult

if TYPE_CHECKING:
    from cowdns.app import Running

__all__ = [
    "CONTENT_TYPE",
    "RELOAD_BUCKETS",
    "CowdnsCollector",
    "ReloadTally",
    "make_registry",
    "render",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Upper bounds in seconds of the reload-duration histogram: a small file loads in
# milliseconds, a big etcd prefix in seconds; the reload deadline defaults to 60 s.
RELOAD_BUCKETS: tuple[float, ...] = (
    0.001,
    0.005,
    0.01,
    0.05,
    0.1,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

OUTCOMES = ("loaded", "unchanged", "failed", "refused")
TRANSPORTS = ("udp", "tcp")


def _type_text(qtype: int) -> str:
    return dns.rdatatype.to_text(dns.rdatatype.RdataType(qtype))


def _rcode_text(rcode: int) -> str:
    return dns.rcode.to_text(dns.rcode.Rcode(rcode))


class ReloadTally:
    """What the reloader reported through its hooks: outcomes, durations, rejected keys."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter(dict.fromkeys(OUTCOMES, 0))
        self.duration_counts = [0] * (len(RELOAD_BUCKETS) + 1)
        self.duration_sum = 0.0
        self.rejected = 0
        self.last: ReloadResult | None = None
        self.last_success: float | None = None
        """Unix time of the last reload that loaded or confirmed the table."""

    def on_result(self, result: ReloadResult) -> None:
        self.outcomes[result.outcome] += 1
        index = next(
            (i for i, bound in enumerate(RELOAD_BUCKETS) if result.duration <= bound),
            len(RELOAD_BUCKETS),
        )
        self.duration_counts[index] += 1
        self.duration_sum += result.duration
        self.last = result
        if result.outcome in ("loaded", "unchanged"):
            self.last_success = time.time()

    def on_rejected(self, error: EntryError) -> None:
        self.rejected += 1


def _histogram(
    name: str,
    documentation: str,
    bounds: Sequence[float],
    counts: Sequence[int],
    total: float,
) -> HistogramMetricFamily:
    buckets: list[tuple[str, float]] = []
    cumulative = 0
    for bound, count in zip(bounds, counts, strict=False):
        cumulative += count
        buckets.append((repr(float(bound)), cumulative))
    buckets.append(("+Inf", sum(counts)))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=total)


class CowdnsCollector(Collector):
    """Builds every cowdns metric family from a running server, at scrape time."""

    def __init__(self, running: Running, reloads: ReloadTally) -> None:
        self.running = running
        self.reloads = reloads

    def describe(self) -> list[Metric]:
        # Families depend on the mode and on traffic; nothing to pre-declare.
        return []

    def collect(self) -> Iterator[Metric]:
        yield from self._queries()
        yield from self._reloads()
        yield from self._table()
        yield from self._lock()

    def _queries(self) -> Iterator[Metric]:
        stats = self.running.engine.stats
        info = GaugeMetricFamily(
            "cowdns_build_info", "cowdns version and table mode.", labels=["version", "mode"]
        )
        info.add_metric([__version__, self.running.config.server.mode], 1)
        yield info

        queries = CounterMetricFamily(
            "cowdns_queries",
            "Answers sent, by transport, query type and response code.",
            labels=["transport", "qtype", "rcode"],
        )
        for (transport, qtype, rcode), count in sorted(stats.answers.items()):
            queries.add_metric([transport, _type_text(qtype), _rcode_text(rcode)], count)
        yield queries

        per_transport = (
            ("cowdns_truncated_answers", "UDP answers sent with TC=1.", stats.truncated),
            (
                "cowdns_dropped_packets",
                "Messages dropped without a reply (too short, or QR=1).",
                stats.dropped,
            ),
            (
                "cowdns_malformed_packets",
                "Messages answered by the wire policy (FORMERR, NOTIMP, BADVERS).",
                stats.malformed,
            ),
        )
        for name, documentation, counter in per_transport:
            family = CounterMetricFamily(name, documentation, labels=["transport"])
            for transport in sorted(set(TRANSPORTS) | set(counter)):
                family.add_metric([transport], counter[transport])
            yield family

        yield CounterMetricFamily(
            "cowdns_cache_hits", "Answers served from the response cache.", value=stats.cache_hits
        )
        yield CounterMetricFamily(
            "cowdns_cache_misses",
            "Cacheable queries that took the normal path.",
            value=stats.cache_misses,
        )
        yield CounterMetricFamily(
            "cowdns_cache_carried",
            "Cached replies kept across a reload (their name did not change); also hits.",
            value=stats.cache_carried,
        )
        yield _histogram(
            "cowdns_answer_latency_seconds",
            "Time inside cowdns from a query's bytes to its reply's bytes.",
            LATENCY_BUCKETS,
            stats.latency_counts,
            stats.latency_sum_ns / 1e9,
        )

    def _reloads(self) -> Iterator[Metric]:
        tally = self.reloads
        reloads = CounterMetricFamily(
            "cowdns_reloads", "Full reloads and pushed changes, by outcome.", labels=["outcome"]
        )
        for outcome, count in sorted(tally.outcomes.items()):
            reloads.add_metric([outcome], count)
        yield reloads
        yield _histogram(
            "cowdns_reload_duration_seconds",
            "Time a reload took, from fetch to install.",
            RELOAD_BUCKETS,
            tally.duration_counts,
            tally.duration_sum,
        )
        last = GaugeMetricFamily(
            "cowdns_reload_last_duration_seconds", "Duration of the most recent reload."
        )
        if tally.last is not None:
            last.add_metric([], tally.last.duration)
        yield last
        if tally.last_success is not None:
            yield GaugeMetricFamily(
                "cowdns_reload_last_success_timestamp_seconds",
                "Unix time of the last reload that loaded or confirmed the table.",
                value=tally.last_success,
            )
        yield CounterMetricFamily(
            "cowdns_rejected_keys",
            "Table entries skipped as invalid (each bad key counted once).",
            value=tally.rejected,
        )

    def _table(self) -> Iterator[Metric]:
        reloader = self.running.reloader
        table = reloader.table.table()
        yield GaugeMetricFamily(
            "cowdns_table_names", "Names in the served table.", value=len(table.entries)
        )
        yield GaugeMetricFamily(
            "cowdns_table_generation",
            "Generation of the served table (0 before the first load).",
            value=table.generation,
        )
        info = GaugeMetricFamily(
            "cowdns_table_info",
            "The served table's source version and source (always 1).",
            labels=["version", "source"],
        )
        info.add_metric([table.version, reloader.source.description], 1)
        yield info
        yield GaugeMetricFamily(
            "cowdns_table_loaded_timestamp_seconds",
            "Unix time the served table was installed.",
            value=table.loaded_at,
        )
        yield GaugeMetricFamily(
            "cowdns_table_age_seconds",
            "Seconds since the served table was installed.",
            value=max(0.0, time.time() - table.loaded_at),
        )

    def _lock(self) -> Iterator[Metric]:
        running = self.running
        if not isinstance(running.table, LockedTable):
            return
        stats = running.table.lock.statistics()
        yield GaugeMetricFamily(
            "cowdns_lock_readers", "Read holds on the table lock now.", value=stats.readers
        )
        yield GaugeMetricFamily(
            "cowdns_lock_readers_waiting",
            "Readers queued for the table lock.",
            value=stats.readers_waiting,
        )
        yield GaugeMetricFamily(
            "cowdns_lock_writers_waiting",
            "Writers queued for the table lock.",
            value=stats.writers_waiting,
        )
        waited = 0.0
        if stats.writer_waiting_since is not None:
            waited = max(0.0, trio.current_time() - stats.writer_waiting_since)
        yield GaugeMetricFamily(
            "cowdns_lock_writer_wait_seconds",
            "How long the longest-waiting writer has waited for the table lock (0: none).",
            value=waited,
        )
        health = running.lock_health
        yield GaugeMetricFamily(
            "cowdns_lock_healthy",
            "1 unless the lock watchdog reports a stuck writer.",
            value=1 if health is None or health.healthy else 0,
        )
        yield CounterMetricFamily(
            "cowdns_lock_watchdog_trips",
            "Stuck-writer incidents reported by the lock watchdog.",
            value=0 if health is None else health.trips,
        )


def make_registry(running: Running, reloads: ReloadTally) -> CollectorRegistry:
    """A registry of its own (not the process-global default) with cowdns's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CowdnsCollector(running, reloads))
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of ``registry``."""
    body: bytes = generate_latest(registry)
    return body
