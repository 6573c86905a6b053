"""Measured servers: how to start each kind, ask it to reload, and read its log.

A *server kind* is one column of the comparison.  Adding one (another cowdns
option set, NSD, Knot) means subclassing :class:`ServerKind`: write whatever
config it needs and return its command line, say how to make it reload and
which output lines mean "serving" and "reload finished".  Everything else --
ports, processes, log capture, load, reports -- is shared.
"""

from __future__ import annotations

import abc
import datetime
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bench.scenarios import Scenario
from bench.workload import ORIGIN, Workload

__all__ = [
    "CowdnsServer",
    "ServerEvent",
    "ServerKind",
    "ServerProcess",
    "free_port",
    "server_kinds",
]


@dataclass(frozen=True)
class ServerEvent:
    """Something the server logged that the figures mark."""

    at: float
    """Wall-clock time (epoch seconds) the server logged it."""
    kind: str
    """``reload`` (a reload finished), or ``stuck`` (watchdog: a writer waits forever)."""
    duration: float = 0.0
    """For ``reload``: how long the reload took, from the server's own log line."""
    detail: str = ""


class ServerKind(abc.ABC):
    """One kind of server under test (one column of the comparison)."""

    name: str
    description: str

    def supports(self, scenario: Scenario) -> bool:
        """Whether this kind can run ``scenario`` (only cowdns can inject its bug)."""
        return not scenario.inject_bug

    @abc.abstractmethod
    def command(
        self, workdir: Path, workload: Workload, port: int, scenario: Scenario
    ) -> list[str]:
        """Write any config under ``workdir`` and return the command line to start."""

    def start_timeout(self, workload: Workload) -> float:
        """Seconds to wait for the first "serving" line (loading a big table takes long)."""
        return 30.0 + workload.size / 5000

    def reload(self, process: subprocess.Popen[str]) -> None:
        """Make the running server re-read its table (default: SIGHUP)."""
        process.send_signal(signal.SIGHUP)

    @abc.abstractmethod
    def is_ready(self, line: str) -> bool:
        """Whether this stdout or stderr line says the server answers queries."""

    @abc.abstractmethod
    def parse_log(self, line: str, arrived: float) -> ServerEvent | None:
        """An event in one stderr line, or None."""


_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
_RELOADED = re.compile(r"reload loaded generation=(\d+) names=(\d+) .*duration=([0-9.]+)s")


def _log_time(line: str, arrived: float) -> float:
    match = _LOG_TIME.match(line)
    if match is None:
        return arrived
    stamp = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
    return stamp.timestamp()  # logging's asctime is local time, like a naive datetime


def _cowdns_binary() -> str:
    beside = Path(sys.executable).with_name("cowdns")
    return str(beside) if beside.exists() else "cowdns"


_CONFIG = """\
# Written by the cowdns bench; reloads come from the bench (SIGHUP), not the timer.
[server]
listen = ["127.0.0.1:{port}"]
mode = "{mode}"

[store]
url = "file:{table}"
reload_interval = 86400
reload_deadline = 3600

[[zone]]
origin = "{origin}"
ttl = 300
ns = ["ns1.{origin}"]
"""


class CowdnsServer(ServerKind):
    """``cowdns serve`` in one table mode."""

    def __init__(self, mode: str, binary: str | None = None) -> None:
        self.mode = mode
        self.name = mode
        self.description = f"cowdns serve --mode {mode}"
        self.binary = binary or _cowdns_binary()

    def supports(self, scenario: Scenario) -> bool:
        return True

    def command(
        self, workdir: Path, workload: Workload, port: int, scenario: Scenario
    ) -> list[str]:
        config = workdir / f"cowdns-{self.mode}.toml"
        config.write_text(
            _CONFIG.format(port=port, mode=self.mode, table=workload.table, origin=ORIGIN),
            encoding="utf-8",
        )
        command = [self.binary, "serve", "--config", str(config), "--mode", self.mode]
        command += ["--listen", f"127.0.0.1:{port}"]
        if scenario.inject_bug:
            command += ["--inject-bug", "missing-runlock", "--watchdog-threshold", "1"]
        return command

    def is_ready(self, line: str) -> bool:
        return line.startswith("cowdns listening on ")

    def parse_log(self, line: str, arrived: float) -> ServerEvent | None:
        reloaded = _RELOADED.search(line)
        if reloaded is not None:
            return ServerEvent(
                _log_time(line, arrived),
                "reload",
                float(reloaded.group(3)),
                f"generation {reloaded.group(1)}, {reloaded.group(2)} names",
            )
        if " ERROR cowdns.lock: " in line:
            return ServerEvent(_log_time(line, arrived), "stuck", detail=line.split(": ", 1)[1])
        return None


def server_kinds(names: list[str], cowdns: str | None = None) -> list[ServerKind]:
    """The kinds named on the command line, in order."""
    known: dict[str, ServerKind] = {
        "cow": CowdnsServer("cow", cowdns),
        "locked": CowdnsServer("locked", cowdns),
    }
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown server {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[name] for name in names]


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` for both UDP and TCP right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no port free for both UDP and TCP on {host}")


class ServerProcess:
    """A started server: its output is read by threads, its events collected."""

    def __init__(
        self, kind: ServerKind, workdir: Path, workload: Workload, scenario: Scenario
    ) -> None:
        self.kind = kind
        self.workload = workload
        self.port = free_port()
        self.command = kind.command(workdir, workload, self.port, scenario)
        self.events: list[ServerEvent] = []
        self.log: list[str] = []
        self.reloads_requested: list[float] = []
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self._threads = [
            threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr,), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read(self, stream: IO[str]) -> None:
        for raw in stream:
            arrived = time.time()
            line = raw.rstrip("\n")
            with self._lock:
                self.log.append(line)
                event = self.kind.parse_log(line, arrived)
                if event is not None:
                    self.events.append(event)
            if self.kind.is_ready(line):
                self._ready.set()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.kind.start_timeout(self.workload)
        while not self._ready.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = "\n".join(self.log[-20:])
                raise RuntimeError(f"{' '.join(self.command)} did not start:\n{tail}")

    def reload_in_flight(self) -> bool:
        """Whether the bench asked for a reload the server has not reported finished."""
        with self._lock:
            finished = sum(1 for event in self.events if event.kind == "reload")
        # The initial load logs one "reload loaded" line before the server is ready.
        return len(self.reloads_requested) > finished - 1

    def reload(self) -> None:
        self.reloads_requested.append(time.time())
        self.kind.reload(self.process)

    def snapshot_events(self) -> list[ServerEvent]:
        with self._lock:
            return list(self.events)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for thread in self._threads:
            thread.join(5)
