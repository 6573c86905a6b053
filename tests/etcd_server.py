"""A real etcd for tests: single members and 3-member clusters on loopback ports.

Each member gets free loopback ports and a data directory under the test's
``tmp_path``; a member can be stopped, killed and restarted on the same ports
and data, like an operator would.  Readiness is polled (``/health``) with an
overall deadline: that is waiting for an external process, not for cowdns.

The fixtures are ``etcd`` (one member) and ``etcd_cluster`` (three).  Import
them into a test module (``from tests.etcd_server import etcd_fixture``; the
function names differ from the fixture names so that a test's ``etcd``
parameter does not shadow an import) or list this module in ``pytest_plugins``
of the top-level conftest.
"""

from __future__ import annotations

import base64
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import pytest
import trio

__all__ = [
    "EtcdCluster",
    "EtcdMember",
    "etcd_cluster_fixture",
    "etcd_fixture",
    "free_port",
    "free_ports",
    "start_cluster",
]

START_DEADLINE = 30.0
STOP_DEADLINE = 10.0


def etcd_binary() -> str:
    """Path of the ``etcd`` binary; fails the test with a clear message if missing."""
    path = shutil.which("etcd")
    if path is None:
        pytest.fail(
            "the etcd binary is not on PATH: install the Debian package etcd-server"
            " (`make test` does)",
            pytrace=False,
        )
    return path


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that nothing listens on right now."""
    # All sockets stay bound until every port is chosen, so no port comes up twice.
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


@dataclass
class EtcdMember:
    """One etcd process; ``start``/``stop``/``kill`` keep ports and data directory."""

    name: str
    data_dir: Path
    client_port: int
    peer_port: int
    initial_cluster: str = ""
    cluster_token: str = "cowdns-test"
    process: trio.Process | None = None

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.with_name(self.data_dir.name + ".log")

    def command(self) -> list[str]:
        return [
            etcd_binary(),
            "--name",
            self.name,
            "--data-dir",
            str(self.data_dir),
            "--listen-client-urls",
            self.client_url,
            "--advertise-client-urls",
            self.client_url,
            "--listen-peer-urls",
            self.peer_url,
            "--initial-advertise-peer-urls",
            self.peer_url,
            "--initial-cluster",
            self.initial_cluster or f"{self.name}={self.peer_url}",
            "--initial-cluster-state",
            "new",
            "--initial-cluster-token",
            self.cluster_token,
            # Short raft timers: a fresh member or a re-election takes a fraction of a second.
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
            "--logger",
            "zap",
            "--log-outputs",
            "stderr",
        ]

    async def start(self) -> None:
        """Start the process (same ports, same data); does not wait for readiness."""
        assert self.process is None, f"{self.name} is already running"
        with self._open_log() as log:
            self.process = await trio.lowlevel.open_process(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )

    def _open_log(self) -> BinaryIO:
        # Appending: a restarted member's log continues the first one's.
        return open(self.log_path, "ab")

    async def wait_ready(self, deadline: float = START_DEADLINE) -> None:
        """Poll ``/health`` until the member reports a leader; fail with its log if not."""
        async with httpx.AsyncClient(timeout=2.0) as client:
            with trio.move_on_after(deadline):
                while True:
                    if self.process is not None and self.process.returncode is not None:
                        pytest.fail(
                            f"etcd {self.name} exited with {self.process.returncode}:\n"
                            + self.log_tail(),
                            pytrace=False,
                        )
                    try:
                        response = await client.get(self.client_url + "/health")
                        if response.status_code == 200 and response.json().get("health") in (
                            "true",
                            True,
                        ):
                            return
                    except (httpx.HTTPError, ValueError):
                        pass
                    await trio.sleep(0.05)
        pytest.fail(
            f"etcd {self.name} not healthy after {deadline:g}s:\n" + self.log_tail(),
            pytrace=False,
        )

    async def stop(self) -> None:
        """Graceful stop (SIGTERM), then SIGKILL if it does not exit in time."""
        await self._end(signal.SIGTERM)

    async def kill(self) -> None:
        """SIGKILL: the member dies without closing anything cleanly."""
        await self._end(signal.SIGKILL)

    async def restart(self) -> None:
        """Start again on the same ports and data directory, and wait until healthy."""
        await self.start()
        await self.wait_ready()

    async def _end(self, sig: int) -> None:
        process = self.process
        if process is None:
            return
        self.process = None
        if process.returncode is None:
            process.send_signal(sig)
            with trio.move_on_after(STOP_DEADLINE):
                await process.wait()
                return
            process.kill()
            await process.wait()

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- direct key access for tests (not through cowdns) ---------------------------

    async def put(self, key: str, value: str) -> int:
        """Put one key; returns the new revision."""
        answer = await self.call("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})
        return int(answer["header"]["revision"])

    async def delete(self, key: str) -> int:
        """Delete one key; returns the new revision."""
        answer = await self.call("/v3/kv/deleterange", {"key": _b64(key)})
        return int(answer["header"]["revision"])

    async def get(self, key: str) -> str | None:
        answer = await self.call("/v3/kv/range", {"key": _b64(key)})
        kvs = answer.get("kvs") or []
        if not kvs:
            return None
        return base64.b64decode(kvs[0].get("value", "")).decode("utf-8")

    async def compact(self, revision: int) -> None:
        await self.call("/v3/kv/compaction", {"revision": str(revision), "physical": True})

    async def call(self, path: str, body: dict[str, object]) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=10.0) as client:
            response = await client.post(self.client_url + path, json=body)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer


@dataclass
class EtcdCluster:
    """Members started together; ``members[i]`` can be stopped and restarted alone."""

    members: list[EtcdMember]

    @property
    def client_urls(self) -> list[str]:
        return [member.client_url for member in self.members]

    async def stop(self) -> None:
        for member in self.members:
            await member.stop()


async def start_cluster(base: Path, size: int) -> EtcdCluster:
    """Start ``size`` members in data directories under ``base``; wait until all are healthy."""
    etcd_binary()
    await trio.Path(base).mkdir(parents=True, exist_ok=True)
    ports = free_ports(2 * size)
    members = [
        EtcdMember(f"n{index}", base / f"n{index}", ports[2 * index], ports[2 * index + 1])
        for index in range(size)
    ]
    initial = ",".join(f"{member.name}={member.peer_url}" for member in members)
    token = f"cowdns-test-{members[0].peer_port}"
    cluster = EtcdCluster(members)
    try:
        # All at once: no member can elect a leader before a quorum is up.
        for member in members:
            member.initial_cluster = initial
            member.cluster_token = token
            await member.start()
        for member in members:
            await member.wait_ready()
    except BaseException:
        with trio.CancelScope(shield=True):
            await cluster.stop()
        raise
    return cluster


@pytest.fixture(name="etcd")
async def etcd_fixture(tmp_path: Path) -> AsyncIterator[EtcdMember]:
    """A fresh single-member etcd, stopped after the test."""
    cluster = await start_cluster(tmp_path / "etcd", 1)
    try:
        yield cluster.members[0]
    finally:
        with trio.CancelScope(shield=True):
            await cluster.stop()


@pytest.fixture(name="etcd_cluster")
async def etcd_cluster_fixture(tmp_path: Path) -> AsyncIterator[EtcdCluster]:
    """A fresh 3-member etcd cluster, stopped after the test."""
    cluster = await start_cluster(tmp_path / "etcd-cluster", 3)
    try:
        yield cluster
    finally:
        with trio.CancelScope(shield=True):
            await cluster.stop()
