"""Query load with dnsperf, and the per-query latencies it reports.

dnsperf 2.10 has no latency histogram; its ``-v`` flag prints one line per
query as it completes: ``> NOERROR name A 0.000437`` (latency in seconds), or
``> T name A`` when the query timed out.  Its ``-S`` interval lines stop while
nothing is answered, so they cannot show a stall; instead the bench runs
dnsperf under ``stdbuf -oL`` (line-buffered stdout) and stamps each line with
the wall clock as it arrives.  A query's completion time is its stamp, its
send time is the stamp minus its latency (minus the timeout for a ``T`` line).
"""

from __future__ import annotations

import re
import resource
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LoadResult", "LoadRun", "LoadSpec", "dnsperf_version"]

_ANSWERED = re.compile(r"^> ([A-Z]+) \S+ \S+ ([0-9.]+)$")
_TIMED_OUT = re.compile(r"^> T \S+ \S+$")
_SUMMARY = {
    "sent": re.compile(r"Queries sent:\s+(\d+)"),
    "completed": re.compile(r"Queries completed:\s+(\d+)"),
    "lost": re.compile(r"Queries lost:\s+(\d+)"),
    "qps": re.compile(r"Queries per second:\s+([0-9.]+)"),
}
_RCODES = re.compile(r"Response codes:\s+(.*)$")
_RCODE = re.compile(r"([A-Z]+) (\d+) \(")


def dnsperf_version() -> str:
    """``dnsperf 2.10.0``; raises FileNotFoundError with a hint when it is missing."""
    if shutil.which("dnsperf") is None:
        raise FileNotFoundError("dnsperf not found; install the Debian package 'dnsperf'")
    out = subprocess.run(
        ["dnsperf", "-h"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ).stdout
    match = re.search(r"Version (\S+)", out)
    return f"dnsperf {match.group(1)}" if match else "dnsperf"


@dataclass(frozen=True)
class LoadSpec:
    """One dnsperf run."""

    duration: float
    rate: int | None
    """Fixed send rate (``-Q``); None sends as fast as answers allow (capacity run)."""
    timeout: float = 5.0
    clients: int = 4
    outstanding: int | None = None
    """``-q``; by default enough that a stall of ``timeout`` never throttles sending."""
    per_query: bool = True
    """Record every query's latency (``-v``); off for capacity runs, where it costs."""

    def command(self, port: int, queries: Path) -> list[str]:
        outstanding = self.outstanding
        if outstanding is None:
            outstanding = min(60000, int((self.rate or 0) * (self.timeout + 1))) or 100
        command = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries)]
        command += ["-l", f"{self.duration:g}", "-t", f"{self.timeout:g}"]
        command += ["-c", str(self.clients), "-q", str(outstanding)]
        if self.rate is not None:
            command += ["-Q", str(self.rate)]
        if self.per_query:
            command = ["stdbuf", "-oL", *command, "-v"]
        return command


@dataclass
class LoadResult:
    """What one dnsperf run measured."""

    spec: LoadSpec
    started: float
    """Wall clock when dnsperf was started (the figures' time zero)."""
    sent: int = 0
    completed: int = 0
    lost: int = 0
    qps: float = 0.0
    """dnsperf's "Queries per second": answered queries over the run time."""
    answered: list[tuple[float, float]] = field(default_factory=list)
    """(completion wall-clock time, latency) of every answered query."""
    timed_out: list[float] = field(default_factory=list)
    """Send time of every query that got no answer within the timeout."""
    rcodes: dict[str, int] = field(default_factory=dict)
    output_tail: list[str] = field(default_factory=list)
    cpu_seconds: float = 0.0
    """CPU time dnsperf itself used (user + system)."""


class LoadRun:
    """dnsperf running in the background; :meth:`wait` returns its result."""

    def __init__(self, spec: LoadSpec, port: int, queries: Path) -> None:
        self.spec = spec
        self.result = LoadResult(spec, time.time())
        self._rusage = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._process = subprocess.Popen(
            spec.command(port, queries),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        result = self.result
        tail: list[str] = []
        for raw in self._process.stdout:
            arrived = time.time()
            line = raw.rstrip("\n")
            answered = _ANSWERED.match(line)
            if answered is not None:
                result.answered.append((arrived, float(answered.group(2))))
                rcode = answered.group(1)
                result.rcodes[rcode] = result.rcodes.get(rcode, 0) + 1
                continue
            if _TIMED_OUT.match(line):
                result.timed_out.append(arrived - self.spec.timeout)
                continue
            tail.append(line)
            codes = _RCODES.search(line)
            if codes is not None and not result.rcodes:  # without -v: the summary's counts
                result.rcodes = {c: int(n) for c, n in _RCODE.findall(codes.group(1))}
            for key, pattern in _SUMMARY.items():
                found = pattern.search(line)
                if found is not None:
                    value = found.group(1)
                    if key == "qps":
                        result.qps = float(value)
                    else:
                        setattr(result, key, int(value))
        result.output_tail = tail[-30:]

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def wait(self) -> LoadResult:
        # dnsperf waits up to its timeout for the last answers after the time limit.
        limit = self.spec.duration + self.spec.timeout + 30
        try:
            status = self._process.wait(limit)
        except subprocess.TimeoutExpired:
            self._process.kill()
            status = self._process.wait()
        self._reader.join(10)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.result.cpu_seconds = (after.ru_utime - self._rusage.ru_utime) + (
            after.ru_stime - self._rusage.ru_stime
        )
        if status != 0 or self.result.sent == 0:
            tail = "\n".join(self.result.output_tail)
            raise RuntimeError(f"dnsperf failed (exit status {status}):\n{tail}")
        return self.result
