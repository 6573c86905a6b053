"""Resident memory of one cowdns process: steady, and at its peak during reloads.

After the server has loaded its table and settled, the bench reads ``VmRSS``
from ``/proc/PID/status`` (steady).  Then, for each reload, it resets the
kernel's high-water mark (writing ``5`` to ``/proc/PID/clear_refs``), swaps
the table file, sends SIGHUP, samples ``VmRSS`` every 50 ms until the server
logs the reload finished, and reads ``VmHWM`` (the peak resident size since
the reset, which also catches a peak between two samples) and, once settled,
``VmRSS`` again.  The peak of a reload
is the larger of the two.  No query load runs meanwhile: the reply cache is
bounded (100,000 replies), so it adds a fixed amount on top.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.scenarios import Scenario, size_label
from bench.servers import ServerKind, ServerProcess
from bench.workload import Workload

__all__ = ["MemoryResult", "memory_markdown", "read_status_kb", "run_memory"]

_SAMPLE_EVERY = 0.05


def read_status_kb(pid: int, key: str) -> int:
    """``VmRSS``/``VmHWM``/… of ``pid`` in kB (0 when the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5", encoding="ascii")
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class ReloadMemory:
    duration: float
    """Seconds from SIGHUP until the server logged the reload finished."""
    sampled_peak_kb: int
    """Largest VmRSS of the 50 ms samples."""
    hwm_kb: int
    """VmHWM at the end of the reload (since the reset before it; 0: reset not allowed)."""
    after_kb: int
    """VmRSS a second after the reload finished."""

    @property
    def peak_kb(self) -> int:
        return max(self.sampled_peak_kb, self.hwm_kb)


@dataclass
class MemoryResult:
    server: str
    scenario: Scenario
    startup_peak_kb: int
    """VmHWM after the initial load (the first load parses and builds like a reload)."""
    steady_kb: int
    reloads: list[ReloadMemory] = field(default_factory=list)
    peak_reset: bool = True
    """Whether the high-water mark could be reset before each reload."""

    @property
    def peak_kb(self) -> int:
        return max((r.peak_kb for r in self.reloads), default=0)

    @property
    def final_kb(self) -> int:
        return self.reloads[-1].after_kb if self.reloads else self.steady_kb

    def to_json(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "scenario": self.scenario.name,
            "size": self.scenario.size,
            "startup_peak_kb": self.startup_peak_kb,
            "steady_kb": self.steady_kb,
            "peak_kb": self.peak_kb,
            "final_kb": self.final_kb,
            "peak_reset": self.peak_reset,
            "reloads": [
                {
                    "duration_s": round(r.duration, 3),
                    "sampled_peak_kb": r.sampled_peak_kb,
                    "hwm_kb": r.hwm_kb,
                    "after_kb": r.after_kb,
                }
                for r in self.reloads
            ],
        }


def _settle(pid: int, seconds: float) -> int:
    time.sleep(seconds)
    return read_status_kb(pid, "VmRSS")


def run_memory(
    kind: ServerKind,
    scenario: Scenario,
    workload: Workload,
    workdir: Path,
    *,
    reloads: int,
    progress: Callable[[str], None],
) -> MemoryResult:
    """Start ``kind`` on the workload, measure steady size, then ``reloads`` reloads."""
    workload.reset()
    server = ServerProcess(kind, workdir, workload, scenario)
    try:
        server.wait_ready()
        pid = server.process.pid
        settle = min(2.0, 0.2 + workload.size / 500_000)  # 2 s for a big table
        steady = _settle(pid, settle)
        result = MemoryResult(kind.name, scenario, read_status_kb(pid, "VmHWM"), steady)
        progress(
            f"{scenario.name} / {kind.name}: {size_label(workload.size)} names loaded,"
            f" steady {steady / 1024:.0f} MB (startup peak {result.startup_peak_kb / 1024:.0f} MB)"
        )
        for _ in range(reloads):
            result.peak_reset = _reset_peak(pid) and result.peak_reset
            done_before = server.reloads_done()
            workload.change()
            started = time.monotonic()
            server.reload()
            sampled = read_status_kb(pid, "VmRSS")
            while server.reloads_done() == done_before:
                if server.process.poll() is not None:
                    raise RuntimeError(f"{kind.name} exited during a reload")
                time.sleep(_SAMPLE_EVERY)
                sampled = max(sampled, read_status_kb(pid, "VmRSS"))
            duration = time.monotonic() - started
            hwm = read_status_kb(pid, "VmHWM") if result.peak_reset else 0
            reload = ReloadMemory(duration, sampled, hwm, _settle(pid, settle))
            result.reloads.append(reload)
            progress(
                f"{scenario.name} / {kind.name}: reload in {duration:.1f}s,"
                f" peak {reload.peak_kb / 1024:.0f} MB, after {reload.after_kb / 1024:.0f} MB"
            )
    finally:
        server.stop()
    return result


def _mb(kb: int) -> str:
    return f"{kb / 1024:.0f}"


def memory_markdown(results: list[MemoryResult]) -> list[str]:
    if not results:
        return []
    size = results[0].scenario.size
    millions = size / 1_000_000
    out = [
        f"Memory ({results[0].scenario.title}; resident size from /proc, MB = MiB):",
        "",
        "| server | steady MB | MB per 1M names | peak during reload MB | peak ÷ steady"
        " | after reloads MB | peak ÷ after | reloads (s) | startup peak MB |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in results:
        ratio = f"{r.peak_kb / r.steady_kb:.2f}" if r.steady_kb else "–"
        after = f"{r.peak_kb / r.final_kb:.2f}" if r.final_kb else "–"
        times = " / ".join(f"{x.duration:.1f}" for x in r.reloads)
        out.append(
            f"| {r.server} | {_mb(r.steady_kb)} | {r.steady_kb / 1024 / millions:.0f}"
            f" | {_mb(r.peak_kb)} | {ratio} | {_mb(r.final_kb)} | {after} | {times}"
            f" | {_mb(r.startup_peak_kb)} |"
        )
    if not all(r.peak_reset for r in results):
        out += ["", "(The peak could not be reset before each reload: sampled VmRSS only.)"]
    out.append("")
    return out
