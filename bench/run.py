"""``python -m bench``: run every scenario against every server kind, then report.

Runs are sequential (one server process at a time, a fresh one per run) so the
servers never compete with each other for the machine's cores.  The peer
comparison keeps all its servers up at once, but only the one being measured
gets queries.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.load import LoadRun, LoadSpec, dnsperf_version
from bench.memory import MemoryResult, memory_markdown, run_memory
from bench.peers import PeerResult, peers_markdown, run_peers
from bench.report import RunRecord, plot_scenario, render_markdown, summarize, write_json
from bench.scenarios import DEFAULT_KINDS, SCENARIO_KINDS, Scenario, build_scenarios, size_label
from bench.servers import DEFAULT_SERVERS, PEER_SERVERS, ServerKind, ServerProcess, server_kinds
from bench.workload import Workload, make_workload

__all__ = ["main"]

_DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(item.replace("_", "")) for item in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected sizes like 10000,100000") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: sizes must be positive")
    return sizes


def _kinds(text: str) -> list[str]:
    kinds = _csv(text)
    unknown = [k for k in kinds if k not in SCENARIO_KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(SCENARIO_KINDS)}")
    return kinds


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Compare cowdns' locked and copy-on-write modes under load and reloads.",
    )
    parser.add_argument("--duration", type=float, default=20, help="seconds of load per run")
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=[10_000, 100_000],
        help="table sizes for the reload scenarios; the smallest also serves steady and bug"
        " (default: 10000,100000; add 1000000 for the slow 1M run)",
    )
    parser.add_argument(
        "--reload-interval",
        type=float,
        default=3,
        help="seconds between table changes; the next change also waits for the previous"
        " reload to finish (default: 3)",
    )
    parser.add_argument("--rate", type=int, default=2000, help="fixed query rate (default: 2000)")
    parser.add_argument(
        "--timeout", type=float, default=5, help="seconds before a query counts as lost"
    )
    parser.add_argument(
        "--capacity-duration",
        type=float,
        default=8,
        help="seconds of unthrottled load after the steady run, for max qps (0: skip)",
    )
    parser.add_argument(
        "--scenarios",
        type=_kinds,
        default=list(DEFAULT_KINDS),
        help=f"which scenario kinds to run, of {','.join(SCENARIO_KINDS)}"
        f" (default: {','.join(DEFAULT_KINDS)})",
    )
    parser.add_argument(
        "--servers",
        type=_csv,
        default=None,
        help=f"server kinds (default: {','.join(DEFAULT_SERVERS)};"
        f" for peers {','.join(PEER_SERVERS)})",
    )
    peers = parser.add_argument_group("peers (max qps of cowdns, NSD, Knot, Twisted Names)")
    peers.add_argument(
        "--repetitions", type=int, default=5, help="rounds over all servers (default: 5)"
    )
    peers.add_argument(
        "--peer-duration", type=float, default=10, help="seconds per measurement (default: 10)"
    )
    peers.add_argument(
        "--outstanding",
        type=int,
        default=200,
        help="dnsperf -q for unthrottled runs (default: 200)",
    )
    peers.add_argument("--clients", type=int, default=4, help="dnsperf -c (default: 4)")
    memory = parser.add_argument_group("memory (resident size through reloads, largest size)")
    memory.add_argument(
        "--memory-reloads", type=int, default=3, help="reloads to follow (default: 3)"
    )
    parser.add_argument(
        "--out", type=Path, default=_DEFAULT_OUT, help="results folder (default: bench/results)"
    )
    parser.add_argument("--cowdns", help="cowdns executable (default: the one beside python)")
    parser.add_argument("--keep-work", action="store_true", help="keep the temp work folder")
    return parser


class Progress:
    """One line per phase, with the time since the bench started."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", flush=True)


def _revision() -> str:
    """The commit the servers ran from, marked when cowdns/ had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "cowdns"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head or 'unknown'}{' + uncommitted changes in cowdns/' if dirty else ''}"


def machine_info() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "revision": _revision(),
        "cpu": cpu,
        "cores": str(os.cpu_count() or "?"),
        "python": platform.python_version(),
        "os": platform.platform(),
        "dnsperf": dnsperf_version(),
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
    }


def _run_one(
    kind: ServerKind,
    scenario: Scenario,
    workload: Workload,
    workdir: Path,
    args: argparse.Namespace,
    progress: Progress,
) -> RunRecord:
    workload.reset()
    server = ServerProcess(kind, workdir, workload, scenario)
    try:
        server.wait_ready()
        every = scenario.reload_interval
        plan = f"table changed every {every:g}s" if every else "no reload"
        progress(
            f"{scenario.name} / {kind.name}: serving {size_label(workload.size)} names on port"
            f" {server.port}; {args.duration:g}s at {args.rate} qps, {plan}"
        )
        spec = LoadSpec(args.duration, args.rate, timeout=args.timeout)
        run = LoadRun(spec, server.port, workload.queries)
        end = run.result.started + args.duration
        last_asked = run.result.started
        while run.running:
            now = time.time()
            due = every is not None and now - last_asked >= every and now < end
            if due and not server.reload_in_flight():
                workload.change()
                server.reload()
                last_asked = now
            time.sleep(0.02)
        load = run.wait()
        capacity = None
        if scenario.reload_interval is None and args.capacity_duration > 0:
            progress(f"{scenario.name} / {kind.name}: {args.capacity_duration:g}s unthrottled")
            unthrottled = LoadSpec(
                args.capacity_duration, None, timeout=args.timeout, outstanding=100, per_query=False
            )
            capacity = LoadRun(unthrottled, server.port, workload.queries).wait().qps
        record = RunRecord(
            kind.name,
            scenario,
            load,
            server.snapshot_events(),
            list(server.reloads_requested),
            capacity,
        )
    finally:
        server.stop()
    s = summarize(record)
    p99 = s.percentiles["p99"]
    reloads = (
        f", {s.reloads} reloads done of {len(record.reloads_requested)} asked" if every else ""
    )
    progress(
        f"{scenario.name} / {kind.name}: {s.qps:.0f} qps answered,"
        f" p99 {'lost' if p99 is None else f'{p99:.2f} ms'}, lost {s.lost}{reloads}"
    )
    return record


def _kinds_by_scenario(
    scenarios: Sequence[Scenario], names: list[str] | None, cowdns: str | None
) -> dict[str, list[ServerKind]]:
    """The servers each scenario runs: ``--servers`` or the scenario's default, supported only.

    Raises ValueError for an unknown name, FileNotFoundError for a missing server.
    """
    chosen: dict[str, list[ServerKind]] = {}
    for scenario in scenarios:
        default = PEER_SERVERS if scenario.kind == "peers" else DEFAULT_SERVERS
        kinds = [k for k in server_kinds(names or list(default), cowdns) if k.supports(scenario)]
        if not kinds:
            raise ValueError(f"no server of --servers can run {scenario.name}")
        chosen[scenario.name] = kinds
    for kind in {k.name: k for ks in chosen.values() for k in ks}.values():
        kind.check()
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    progress = Progress()
    scenarios = build_scenarios(args.scenarios, args.sizes, args.reload_interval)
    try:
        machine = machine_info()
        kinds_of = _kinds_by_scenario(scenarios, args.servers, args.cowdns)
    except (FileNotFoundError, ValueError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    if shutil.which("stdbuf") is None:
        print("bench: stdbuf (coreutils) is needed for per-query timestamps", file=sys.stderr)
        return 2
    all_kinds = list({kind.name: kind for ks in kinds_of.values() for kind in ks}.values())
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    workroot = Path(tempfile.mkdtemp(prefix="cowdns-bench-"))
    progress(
        f"{len(scenarios)} scenarios, servers {', '.join(k.name for k in all_kinds)} on"
        f" {machine['cpu']}, {machine['cores']} cores; work folder {workroot}"
    )
    workloads: dict[tuple[int, bool], Workload] = {}
    records: list[RunRecord] = []
    peer_results: list[PeerResult] = []
    memory_results: list[MemoryResult] = []
    try:
        for scenario in scenarios:
            mixed = scenario.kind == "peers"
            if (scenario.size, mixed) not in workloads:
                progress(
                    f"writing a {size_label(scenario.size)}-name table and query file"
                    + (" (A/AAAA/NXDOMAIN mix, zone file too)" if mixed else "")
                )
                workloads[scenario.size, mixed] = make_workload(
                    workroot / f"size-{scenario.size}{'-mixed' if mixed else ''}",
                    scenario.size,
                    mixed=mixed,
                )
            workload = workloads[scenario.size, mixed]
            kinds = kinds_of[scenario.name]
            if scenario.kind == "peers":
                peer_results.append(
                    run_peers(
                        kinds,
                        scenario,
                        workload,
                        workroot,
                        duration=args.peer_duration,
                        repetitions=args.repetitions,
                        outstanding=args.outstanding,
                        clients=args.clients,
                        # dnsperf waits up to the timeout for stragglers after each run.
                        timeout=min(args.timeout, 2.0),
                        progress=progress,
                    )
                )
                continue
            for kind in kinds:
                workdir = workroot / f"{scenario.name}-{kind.name}"
                workdir.mkdir()
                if scenario.kind == "memory":
                    memory_results.append(
                        run_memory(
                            kind,
                            scenario,
                            workload,
                            workdir,
                            reloads=args.memory_reloads,
                            progress=progress,
                        )
                    )
                else:
                    records.append(_run_one(kind, scenario, workload, workdir, args, progress))
    finally:
        if not args.keep_work:
            shutil.rmtree(workroot, ignore_errors=True)
    settings: dict[str, Any] = {
        "duration": args.duration,
        "rate": args.rate,
        "timeout": args.timeout,
        "sizes": args.sizes,
        "reload_interval": args.reload_interval,
        "servers": [kind.description for kind in all_kinds],
        "command": shlex.join(["python", "-m", "bench", *argv]),
    }
    extra: list[str] = []
    for result in peer_results:
        extra += peers_markdown(result)
    extra += memory_markdown(memory_results)
    markdown = render_markdown(records, machine, settings, extra)
    (out / "latest.md").write_text(markdown, encoding="utf-8")
    write_json(
        out / "latest.json",
        records,
        machine,
        settings,
        peers=[r.to_json() for r in peer_results],
        memory=[r.to_json() for r in memory_results],
    )
    for scenario in (s for s in scenarios if s.kind == "load"):
        plot_scenario(
            out / f"{scenario.name}.png",
            scenario,
            [r for r in records if r.scenario == scenario],
        )
    figures = sum(1 for s in scenarios if s.kind == "load")
    progress(f"wrote {out / 'latest.md'}, {out / 'latest.json'} and {figures} figures")
    print()
    print(markdown)
    return 0
