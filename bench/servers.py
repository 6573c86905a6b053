"""Measured servers: how to start each kind, ask it to reload, and read its log.

A *server kind* is one column of the comparison.  Adding one means subclassing
:class:`ServerKind`: write whatever config it needs and return its command
line, say how to make it reload and which output lines mean "serving" and
"reload finished".  Everything else -- ports, processes, log capture, load,
reports -- is shared.  Besides cowdns in its two modes (and with ``--workers``)
there are three peers for the max-qps comparison, each serving the same data
from a zone file: NSD and Knot (Debian packages ``nsd`` and ``knot``) and
Twisted Names (installed into the bench's Python on first use).
"""

from __future__ import annotations

import abc
import datetime
import os
import re
import shutil
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
    "DEFAULT_SERVERS",
    "PEER_SERVERS",
    "CowdnsServer",
    "KnotServer",
    "NsdServer",
    "ServerEvent",
    "ServerKind",
    "ServerProcess",
    "TwistedServer",
    "free_port",
    "process_tree",
    "server_kinds",
    "tree_cpu_seconds",
]

DEFAULT_SERVERS = ("cow", "locked")
"""Servers of the load scenarios (steady, reload, bug) and memory, unless ``--servers``."""
PEER_SERVERS = ("cow", "cow-w2", "nsd", "knot", "twisted")
"""Servers of the peer comparison unless ``--servers``."""


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
    ready_lines: int = 1
    """How many "serving" lines mean every process answers (``--workers N``: N)."""

    def supports(self, scenario: Scenario) -> bool:
        """Whether this kind can run ``scenario`` (only cowdns can inject its bug)."""
        return not scenario.inject_bug

    def check(self) -> None:
        """Raise FileNotFoundError with an install hint when the server is missing."""
        return None

    def version(self) -> str:
        """The server's version, for the report."""
        return ""

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


_SERVING = re.compile(r" INFO cowdns: (worker \d+: )?serving ")
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
    """``cowdns serve`` in one table mode, optionally with ``--workers N``."""

    def __init__(self, mode: str, binary: str | None = None, workers: int = 1) -> None:
        self.mode = mode
        self.workers = workers
        self.name = mode if workers == 1 else f"{mode}-w{workers}"
        self.description = f"cowdns serve --mode {mode}" + (
            f" --workers {workers}" if workers > 1 else ""
        )
        self.ready_lines = workers
        self.binary = binary or _cowdns_binary()

    def supports(self, scenario: Scenario) -> bool:
        # The memory scenario reads one process's /proc status.
        return self.workers == 1 or scenario.kind != "memory"

    def check(self) -> None:
        if shutil.which(self.binary) is None:
            raise FileNotFoundError(f"{self.binary} not found; run `make venv` first")

    def version(self) -> str:
        return "cowdns"

    def command(
        self, workdir: Path, workload: Workload, port: int, scenario: Scenario
    ) -> list[str]:
        config = workdir / f"cowdns-{self.mode}.toml"
        config.write_text(
            _CONFIG.format(port=port, mode=self.mode, table=workload.table, origin=ORIGIN),
            encoding="utf-8",
        )
        command = [self.binary, "serve", "--config", str(config), "--mode", self.mode]
        command += ["--listen", f"127.0.0.1:{port}", "--admin", "off"]
        if self.workers > 1:
            command += ["--workers", str(self.workers)]
        if scenario.inject_bug:
            command += ["--inject-bug", "missing-runlock", "--watchdog-threshold", "1"]
        return command

    def is_ready(self, line: str) -> bool:
        if self.workers > 1:  # only the first worker prints the stdout line; each logs this
            return _SERVING.search(line) is not None
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


def _first_line(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0].strip() if lines else ""


class PeerServer(ServerKind):
    """Another server for the max-qps comparison: serves the workload as a zone file."""

    def supports(self, scenario: Scenario) -> bool:
        return scenario.kind == "peers"

    def is_ready(self, line: str) -> bool:
        return False

    def parse_log(self, line: str, arrived: float) -> ServerEvent | None:
        return None


_NSD_CONFIG = """\
# Written by the cowdns bench: one process, no rate limiting, everything in {dir}.
server:
  ip-address: 127.0.0.1@{port}
  port: {port}
  username: ""
  chroot: ""
  zonesdir: "{dir}"
  database: ""
  pidfile: "{dir}/nsd.pid"
  xfrdfile: "{dir}/xfrd.state"
  zonelistfile: "{dir}/zone.list"
  xfrdir: "{dir}"
  server-count: 1
  verbosity: 1
  hide-version: yes
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: {origin}
  zonefile: "{zone}"
"""


class NsdServer(PeerServer):
    """NSD (Debian ``nsd``): one server process, response rate limiting off."""

    name = "nsd"
    description = "nsd -d (server-count 1, rrl off)"

    def check(self) -> None:
        if shutil.which("nsd") is None:
            raise FileNotFoundError("nsd not found; install the Debian package 'nsd'")

    def version(self) -> str:
        return _first_line(["nsd", "-v"])

    def command(
        self, workdir: Path, workload: Workload, port: int, scenario: Scenario
    ) -> list[str]:
        config = workdir / "nsd.conf"
        config.write_text(
            _NSD_CONFIG.format(port=port, dir=workdir, origin=ORIGIN, zone=workload.zone_file()),
            encoding="utf-8",
        )
        return ["nsd", "-d", "-c", str(config)]

    def is_ready(self, line: str) -> bool:
        return "nsd started" in line


_KNOT_CONFIG = """\
# Written by the cowdns bench: {workers} UDP worker(s), everything in {dir}.
server:
  rundir: "{dir}"
  listen: 127.0.0.1@{port}
  udp-workers: {workers}
  tcp-workers: 1
  background-workers: 1
log:
  - target: stderr
    any: info
database:
  storage: "{dir}"
template:
  - id: default
    storage: "{dir}"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
  - domain: {origin}
    file: "{zone}"
"""


class KnotServer(PeerServer):
    """Knot DNS (Debian ``knot``): one UDP worker thread, no modules (so no RRL)."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self.name = "knot" if workers == 1 else f"knot-w{workers}"
        self.description = f"knotd (udp-workers {workers})"

    def check(self) -> None:
        if shutil.which("knotd") is None:
            raise FileNotFoundError("knotd not found; install the Debian package 'knot'")

    def version(self) -> str:
        return _first_line(["knotd", "-V"])

    def command(
        self, workdir: Path, workload: Workload, port: int, scenario: Scenario
    ) -> list[str]:
        config = workdir / "knot.conf"
        config.write_text(
            _KNOT_CONFIG.format(
                port=port,
                dir=workdir,
                origin=ORIGIN,
                zone=workload.zone_file(),
                workers=self.workers,
            ),
            encoding="utf-8",
        )
        return ["knotd", "-c", str(config)]

    def is_ready(self, line: str) -> bool:
        return f"[{ORIGIN}.] loaded" in line


def _twistd() -> Path:
    return Path(sys.executable).with_name("twistd")


class TwistedServer(PeerServer):
    """Twisted Names (``twistd dns --bindzone``); pip-installed into this Python when missing."""

    name = "twisted"
    description = "twistd -n dns --bindzone"

    def check(self) -> None:
        if _twistd().exists():
            return
        print(f"bench: Twisted is missing; installing it: {sys.executable} -m pip install twisted")
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "twisted"])
        if done.returncode != 0 or not _twistd().exists():
            raise FileNotFoundError("could not install twisted (pip install twisted)")

    def version(self) -> str:
        return _first_line([str(_twistd()), "--version"])

    def command(
        self, workdir: Path, workload: Workload, port: int, scenario: Scenario
    ) -> list[str]:
        return [
            str(_twistd()),
            "-n",
            "--pidfile=",
            "dns",
            "--bindzone",
            str(workload.zone_file()),
            "-p",
            str(port),
            "-i",
            "127.0.0.1",
        ]

    def start_timeout(self, workload: Workload) -> float:
        return 60.0 + workload.size / 1000

    def is_ready(self, line: str) -> bool:
        return "DNSDatagramProtocol starting on" in line


def server_kinds(names: list[str], cowdns: str | None = None) -> list[ServerKind]:
    """The kinds named on the command line, in order."""
    known: dict[str, ServerKind] = {
        "cow": CowdnsServer("cow", cowdns),
        "locked": CowdnsServer("locked", cowdns),
        "cow-w2": CowdnsServer("cow", cowdns, workers=2),
        "nsd": NsdServer(),
        "knot": KnotServer(),
        "knot-w2": KnotServer(workers=2),
        "twisted": TwistedServer(),
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
        self._ready_seen = 0
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            self.command,
            cwd=workdir,
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
                self._ready_seen += 1
                if self._ready_seen >= self.kind.ready_lines:
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
        # The initial load logs one "reload loaded" line before the server is ready.
        return len(self.reloads_requested) > self.reloads_done()

    def reload(self) -> None:
        self.reloads_requested.append(time.time())
        self.kind.reload(self.process)

    def snapshot_events(self) -> list[ServerEvent]:
        with self._lock:
            return list(self.events)

    def reloads_done(self) -> int:
        """Reloads the server reported finished, not counting the initial load."""
        with self._lock:
            logged = sum(1 for event in self.events if event.kind == "reload")
        # Each of N workers logs its own line; the initial load logged one each.
        return logged // self.kind.ready_lines - 1

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


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (``--workers`` children), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` and its descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text(encoding="ascii").rsplit(")", 1)[1]
        except OSError:
            continue
        values = fields.split()
        total += int(values[11]) + int(values[12])  # utime, stime (fields 14 and 15)
    return total / ticks
