"""Maximum queries per second of cowdns and its peers on the same zone and queries.

Every server of the comparison starts once (each on its own loopback port,
serving the same data: cowdns from the JSON table, the others from a zone file
written from it) and stays up, idle while another is measured.  Then, for each
repetition, every server in turn gets ``duration`` seconds of unthrottled load
from dnsperf with the same query file; the order rotates between repetitions
so that no server always runs first or last.  The report gives each server's
median and its ratio to NSD and to Twisted Names.

dnsperf runs on the same machine, so it competes with the server for the
cores; the bench records the CPU time both used, so a reader can tell when
dnsperf rather than the server was the limit.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.load import LoadRun, LoadSpec
from bench.scenarios import Scenario
from bench.servers import ServerKind, ServerProcess, tree_cpu_seconds
from bench.workload import Workload

__all__ = ["PeerResult", "PeerSample", "peers_markdown", "run_peers"]


@dataclass(frozen=True)
class PeerSample:
    """One unthrottled dnsperf run against one server."""

    server: str
    repetition: int
    qps: float
    sent: int
    lost: int
    server_cpu: float
    """Server CPU seconds (all its processes) per second of the run: 1.0 is one core."""
    dnsperf_cpu: float
    """dnsperf's CPU seconds per second of the run."""
    rcodes: dict[str, int]


@dataclass
class PeerResult:
    scenario: Scenario
    servers: list[str]
    descriptions: dict[str, str]
    versions: dict[str, str]
    duration: float
    outstanding: int
    clients: int
    samples: list[PeerSample] = field(default_factory=list)

    def median(self, server: str, attribute: str = "qps") -> float:
        values = [float(getattr(s, attribute)) for s in self.samples if s.server == server]
        return statistics.median(values) if values else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.name,
            "size": self.scenario.size,
            "duration": self.duration,
            "outstanding": self.outstanding,
            "clients": self.clients,
            "servers": {
                name: {
                    "description": self.descriptions[name],
                    "version": self.versions[name],
                    "median_qps": round(self.median(name), 1),
                    "qps": [round(s.qps, 1) for s in self.samples if s.server == name],
                }
                for name in self.servers
            },
            "samples": [
                {
                    "server": s.server,
                    "repetition": s.repetition,
                    "qps": round(s.qps, 1),
                    "sent": s.sent,
                    "lost": s.lost,
                    "server_cpu": round(s.server_cpu, 3),
                    "dnsperf_cpu": round(s.dnsperf_cpu, 3),
                    "rcodes": s.rcodes,
                }
                for s in self.samples
            ],
        }


def _measure(
    server: ServerProcess, workload: Workload, spec: LoadSpec, repetition: int
) -> PeerSample:
    # The server's CPU over the sending window only: after it, dnsperf may wait up to
    # its timeout for the last answers while the server idles.
    cpu_before = tree_cpu_seconds(server.process.pid)
    started = time.monotonic()
    run = LoadRun(spec, server.port, workload.queries)
    time.sleep(spec.duration)
    elapsed = time.monotonic() - started
    cpu = tree_cpu_seconds(server.process.pid) - cpu_before
    load = run.wait()
    return PeerSample(
        server.kind.name,
        repetition,
        load.qps,
        load.sent,
        load.lost,
        cpu / elapsed,
        load.cpu_seconds / spec.duration,
        dict(load.rcodes),
    )


def run_peers(
    kinds: Sequence[ServerKind],
    scenario: Scenario,
    workload: Workload,
    workroot: Path,
    *,
    duration: float,
    repetitions: int,
    outstanding: int,
    clients: int,
    timeout: float,
    progress: Callable[[str], None],
) -> PeerResult:
    """Start every server, then measure each in turn, ``repetitions`` rounds."""
    result = PeerResult(
        scenario,
        [kind.name for kind in kinds],
        {kind.name: kind.description for kind in kinds},
        {kind.name: kind.version() for kind in kinds},
        duration,
        outstanding,
        clients,
    )
    spec = LoadSpec(
        duration, None, timeout=timeout, clients=clients, outstanding=outstanding, per_query=False
    )
    warmup = LoadSpec(
        min(1.0, duration),
        None,
        timeout=timeout,
        clients=clients,
        outstanding=outstanding,
        per_query=False,
    )
    servers: list[ServerProcess] = []
    try:
        for kind in kinds:
            workdir = workroot / f"{scenario.name}-{kind.name}"
            workdir.mkdir(parents=True, exist_ok=True)
            server = ServerProcess(kind, workdir, workload, scenario)
            servers.append(server)
            server.wait_ready()
            LoadRun(warmup, server.port, workload.queries).wait()
            progress(f"peers / {kind.name}: serving on port {server.port} ({kind.description})")
        for repetition in range(repetitions):
            shift = repetition % len(servers)
            for server in servers[shift:] + servers[:shift]:
                sample = _measure(server, workload, spec, repetition)
                result.samples.append(sample)
                progress(
                    f"peers / {sample.server} #{repetition + 1}: {sample.qps:.0f} qps,"
                    f" server CPU {100 * sample.server_cpu:.0f} %,"
                    f" dnsperf CPU {100 * sample.dnsperf_cpu:.0f} %"
                )
    finally:
        for server in servers:
            server.stop()
    return result


def _times(value: float, reference: float) -> str:
    return f"{value / reference:.2f}×" if reference > 0 else "–"


def _rcode_mix(result: PeerResult, server: str) -> str:
    totals: dict[str, int] = {}
    for sample in result.samples:
        if sample.server == server:
            for code, count in sample.rcodes.items():
                totals[code] = totals.get(code, 0) + count
    answered = sum(totals.values())
    if not answered:
        return "–"
    return ", ".join(f"{code} {100 * n / answered:.0f} %" for code, n in sorted(totals.items()))


def peers_markdown(result: PeerResult) -> list[str]:
    """The comparison table: median qps, ratios to NSD and Twisted, CPU use."""
    rounds = len(result.samples) // max(1, len(result.servers))
    out = [
        f"Peer comparison ({result.scenario.title}): each server {rounds}"
        f" runs of {result.duration:g}s, order rotated every round,"
        f" dnsperf `-c {result.clients} -q {result.outstanding}` with no rate limit.",
        "",
        "| server | what | median qps | runs (qps) | ÷ NSD | ÷ Twisted"
        " | server CPU | dnsperf CPU | answers |",
        "|---|---|---:|---|---:|---:|---:|---:|---|",
    ]
    nsd = result.median("nsd") if "nsd" in result.servers else 0.0
    twisted = result.median("twisted") if "twisted" in result.servers else 0.0
    for name in result.servers:
        runs = " / ".join(f"{s.qps / 1000:.0f}k" for s in result.samples if s.server == name)
        median = result.median(name)
        out.append(
            f"| {name} | {result.descriptions[name]} | {median:.0f} | {runs}"
            f" | {_times(median, nsd)} | {_times(median, twisted)}"
            f" | {100 * result.median(name, 'server_cpu'):.0f} %"
            f" | {100 * result.median(name, 'dnsperf_cpu'):.0f} % | {_rcode_mix(result, name)} |"
        )
    versions = "; ".join(f"{n}: {v}" for n, v in result.versions.items() if v and v != "cowdns")
    out += ["", f"Versions: {versions}." if versions else "", ""]
    return out
