"""Numbers, tables and figures from the measured runs.

Latency percentiles are taken over every query *sent*, with a query that got
no answer counted as slower than any answer: when more than 1 % of the queries
were lost, p99 is "lost" rather than the p99 of the lucky ones.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.load import LoadResult
from bench.scenarios import Scenario
from bench.servers import ServerEvent

__all__ = [
    "RunRecord",
    "Summary",
    "plot_scenario",
    "reload_cost_table",
    "render_markdown",
    "summarize",
    "write_json",
]

PERCENTILES = (50.0, 99.0, 99.9)


@dataclass
class RunRecord:
    """One server kind under one scenario."""

    server: str
    scenario: Scenario
    load: LoadResult
    events: list[ServerEvent]
    reloads_requested: list[float]
    capacity_qps: float | None = None
    """Steady scenario only: answered queries per second with no rate limit."""


@dataclass
class Summary:
    qps: float
    percentiles: dict[str, float | None]
    """Milliseconds by "p50"/"p99"/"p99.9"; None when that share of queries was lost."""
    sent: int
    lost: int
    reloads: int
    reload_seconds: list[float] = field(default_factory=list)


def percentile_label(p: float) -> str:
    return f"p{p:g}"


def latency_percentiles(
    latencies: Sequence[float], sent: int, ps: Sequence[float] = PERCENTILES
) -> dict[str, float | None]:
    """Nearest-rank percentiles in milliseconds over ``sent`` queries; lost ones rank last."""
    ordered = sorted(latencies)
    total = max(sent, len(ordered))
    result: dict[str, float | None] = {}
    for p in ps:
        rank = max(1, math.ceil(p / 100 * total))
        result[percentile_label(p)] = ordered[rank - 1] * 1000 if rank <= len(ordered) else None
    return result


def _reloads_during(record: RunRecord) -> list[ServerEvent]:
    start = record.load.started
    end = start + record.load.spec.duration
    return [e for e in record.events if e.kind == "reload" and start <= e.at <= end + 1]


def summarize(record: RunRecord) -> Summary:
    load = record.load
    reloads = _reloads_during(record)
    return Summary(
        qps=load.qps,
        percentiles=latency_percentiles([lat for _, lat in load.answered], load.sent),
        sent=load.sent,
        lost=load.lost,
        reloads=len(reloads),
        reload_seconds=[e.duration for e in reloads],
    )


@dataclass
class Series:
    """Per-second values, second 0 starting when dnsperf started."""

    answered: list[int]
    """Answers received in each second."""
    p99_ms: list[float | None]
    """p99 latency of the queries *sent* in each second (None: none sent, or >1 % lost)."""
    lost: list[int]
    """Queries sent in each second that were never answered."""


def series(load: LoadResult) -> Series:
    seconds = max(1, math.ceil(load.spec.duration))
    answered = [0] * seconds
    by_send: list[list[float]] = [[] for _ in range(seconds)]
    lost = [0] * seconds

    def slot(at: float) -> int:
        return min(seconds - 1, max(0, int(at - load.started)))

    for done, latency in load.answered:
        if done - load.started < seconds:
            answered[slot(done)] += 1
        by_send[slot(done - latency)].append(latency)
    for sent_at in load.timed_out:
        lost[slot(sent_at)] += 1
    p99 = [
        latency_percentiles(lat, len(lat) + gone, (99.0,))["p99"] if lat or gone else None
        for lat, gone in zip(by_send, lost, strict=True)
    ]
    return Series(answered, p99, lost)


def _ms(value: float | None) -> str:
    if value is None:
        return "lost"
    return f"{value:.2f}" if value < 10 else f"{value:.0f}"


def _reload_cell(summary: Summary) -> str:
    if not summary.reload_seconds:
        return "–"
    times = summary.reload_seconds
    return f"{summary.reloads} ({statistics.median(times):.2f} / {max(times):.2f})"


def results_table(records: Sequence[RunRecord]) -> list[str]:
    lines = [
        "| server | scenario | qps | p50 ms | p99 ms | p99.9 ms | lost"
        " | reloads done (median / max s) |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for record in records:
        s = summarize(record)
        p = s.percentiles
        lost = f"{s.lost}" if s.sent == 0 else f"{s.lost} ({100 * s.lost / s.sent:.1f} %)"
        lines.append(
            f"| {record.server} | {record.scenario.name} | {s.qps:.0f} | {_ms(p['p50'])}"
            f" | {_ms(p['p99'])} | {_ms(p['p99.9'])} | {lost} | {_reload_cell(s)} |"
        )
    return lines


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "–" if a is None and b is None else ("cow lost them" if a is None else "∞")
    return f"{b / a:.1f}×" if a > 0 else "–"


def comparison_table(records: Sequence[RunRecord]) -> list[str]:
    """locked ÷ cow for each scenario both ran (how many times worse locked is)."""
    by_key = {(r.server, r.scenario.name): summarize(r) for r in records}
    scenarios = list(dict.fromkeys(r.scenario.name for r in records))
    lines = [
        "| scenario | p50 locked÷cow | p99 locked÷cow | p99.9 locked÷cow | lost cow / locked |",
        "|---|---:|---:|---:|---|",
    ]
    for name in scenarios:
        cow, locked = by_key.get(("cow", name)), by_key.get(("locked", name))
        if cow is None or locked is None:
            continue
        cells = [_ratio(cow.percentiles[k], locked.percentiles[k]) for k in ("p50", "p99", "p99.9")]
        lines.append(f"| {name} | {' | '.join(cells)} | {cow.lost} / {locked.lost} |")
    return lines if len(lines) > 2 else []


def reload_cost_table(records: Sequence[RunRecord]) -> list[str]:
    """p99 with reloads ÷ p99 without, per server, where a steady run has the same size."""
    steady = {
        (r.server, r.scenario.size): summarize(r)
        for r in records
        if r.scenario.reload_interval is None
    }
    lines = [
        "| server | scenario | p99 no reload ms | p99 with reloads ms | ratio | lost |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for record in records:
        if record.scenario.reload_interval is None or record.scenario.inject_bug:
            continue
        base = steady.get((record.server, record.scenario.size))
        if base is None:
            continue
        s = summarize(record)
        before, during = base.percentiles["p99"], s.percentiles["p99"]
        ratio = "–"
        if before is not None and during is not None and before > 0:
            ratio = f"{during / before:.1f}×"
        elif during is None:
            ratio = "lost"
        lines.append(
            f"| {record.server} | {record.scenario.name} | {_ms(before)} | {_ms(during)}"
            f" | {ratio} | {s.lost} |"
        )
    return lines if len(lines) > 2 else []


def render_markdown(
    records: Sequence[RunRecord],
    machine: dict[str, str],
    settings: dict[str, Any],
    extra: Sequence[str] = (),
) -> str:
    """The results page; ``extra`` lines (peers, memory) go after the load tables."""
    scenarios = list(dict.fromkeys(r.scenario for r in records))
    out = ["# cowdns bench: latest results", ""]
    out.append(
        f"Run {machine['date']} on {machine['cpu']}, {machine['cores']} cores (shared),"
        f" Python {machine['python']}, {machine['dnsperf']}; cowdns {machine['revision']}."
    )
    if not records:
        out += [f"Command: `{settings['command']}`.", "", *extra]
        return "\n".join(out)
    out.append(
        f"Load: dnsperf at a fixed {settings['rate']} queries/s for {settings['duration']:g}s"
        f" per run, {settings['timeout']:g}s timeout; command: `{settings['command']}`."
    )
    out += ["", "Scenarios:", ""]
    out += [f"* `{s.name}`: {s.title}" for s in scenarios]
    out += ["", *results_table(records), ""]
    comparison = comparison_table(records)
    if comparison:
        out += ["How many times worse locked is than copy-on-write:", "", *comparison, ""]
    capacity = [r for r in records if r.capacity_qps is not None]
    if capacity:
        out += ["Capacity (steady scenario, no rate limit, answers per second):", ""]
        out += ["| server | max qps |", "|---|---:|"]
        out += [f"| {r.server} | {r.capacity_qps:.0f} |" for r in capacity]
        out.append("")
    cost = reload_cost_table(records)
    if cost:
        out += ["What reloads cost (p99 with reloads ÷ p99 of the steady run, same size):", ""]
        out += [*cost, ""]
    out += [*extra]
    out += ["Figures: " + ", ".join(f"[{s.name}]({s.name}.png)" for s in scenarios), ""]
    return "\n".join(out)


def write_json(
    path: Path,
    records: Sequence[RunRecord],
    machine: dict[str, str],
    settings: dict[str, Any],
    *,
    peers: Sequence[dict[str, Any]] = (),
    memory: Sequence[dict[str, Any]] = (),
) -> None:
    runs = []
    for record in records:
        s = summarize(record)
        per_second = series(record.load)
        runs.append(
            {
                "server": record.server,
                "scenario": record.scenario.name,
                "size": record.scenario.size,
                "reload_interval": record.scenario.reload_interval,
                "inject_bug": record.scenario.inject_bug,
                "qps": round(s.qps, 1),
                "latency_ms": s.percentiles,
                "sent": s.sent,
                "completed": record.load.completed,
                "lost": s.lost,
                "rcodes": record.load.rcodes,
                "capacity_qps": record.capacity_qps,
                "reload_durations_s": s.reload_seconds,
                "reloads_requested_at_s": [
                    round(t - record.load.started, 3) for t in record.reloads_requested
                ],
                "server_events": [
                    {
                        "at_s": round(e.at - record.load.started, 3),
                        "kind": e.kind,
                        "duration_s": e.duration,
                        "detail": e.detail,
                    }
                    for e in record.events
                ],
                "per_second": {
                    "answered": per_second.answered,
                    "p99_ms": per_second.p99_ms,
                    "lost": per_second.lost,
                },
            }
        )
    document: dict[str, Any] = {"machine": machine, "settings": settings, "runs": runs}
    if peers:
        document["peers"] = list(peers)
    if memory:
        document["memory"] = list(memory)
    path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")


_COLORS = {"cow": "tab:blue", "locked": "tab:red"}
_FALLBACK = ("tab:green", "tab:purple", "tab:orange", "tab:brown")


def _color(server: str, index: int) -> str:
    return _COLORS.get(server, _FALLBACK[index % len(_FALLBACK)])


def plot_scenario(path: Path, scenario: Scenario, records: Sequence[RunRecord]) -> None:
    """Throughput and p99 per second for every server on one figure, reloads marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(9, 6), dpi=90)
    timeout_ms = 0.0
    for index, record in enumerate(records):
        color = _color(record.server, index)
        load = record.load
        per_second = series(load)
        xs = list(range(len(per_second.answered)))
        # A step per second; repeating the last value draws the final second too.
        edges = [*xs, len(xs)]
        answered = [*per_second.answered, per_second.answered[-1]]
        top.step(edges, answered, where="post", color=color, label=record.server)
        timeout_ms = max(timeout_ms, load.spec.timeout * 1000)
        p99 = [v if v is not None else math.nan for v in per_second.p99_ms]
        p99.append(p99[-1])
        bottom.step(edges, p99, where="post", color=color, label=f"{record.server} p99")
        gone = [
            x + 0.35 + 0.3 * (index % 2)
            for x, v, n in zip(xs, per_second.p99_ms, per_second.lost, strict=True)
            if n and v is None
        ]
        if gone:
            bottom.plot(
                gone,
                [load.spec.timeout * 1000] * len(gone),
                "x+12"[index % 4],
                color=color,
                markersize=8,
                label=f"{record.server}: >1 % lost",
            )
        for event in record.events:
            at = event.at - load.started
            if event.kind == "reload" and 0 <= at <= len(xs):
                for axis in (top, bottom):
                    axis.axvspan(at - event.duration, at, color=color, alpha=0.15, lw=0)
            elif event.kind == "stuck" and 0 <= at <= len(xs):
                for axis in (top, bottom):
                    axis.axvline(at, color=color, ls="-.", lw=1)
        # Servers asked at the same moment would hide each other's line: each
        # draws every n-th dash of the pattern, shifted by its index, so
        # coinciding lines alternate colours instead.
        dashed = (4.0 * index, (4.0, 4.0 * max(len(records) - 1, 1)))
        for asked in record.reloads_requested:
            for axis in (top, bottom):
                axis.axvline(asked - load.started, color=color, ls=dashed, lw=1.0)
    top.set_ylabel("answers / s")
    top.set_ylim(bottom=0)
    top.set_title(scenario.title, fontsize=10)
    top.legend(loc="lower left", fontsize=8)
    bottom.set_yscale("log")
    bottom.set_ylabel("p99 latency, ms (by send second)")
    bottom.set_xlabel(
        "seconds since load start\n"
        "dashed: reload asked · shaded: reload running (server log) · dash-dot: watchdog 'stuck'",
        fontsize=9,
    )
    if timeout_ms:
        bottom.axhline(timeout_ms, color="grey", lw=0.5)
    bottom.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
