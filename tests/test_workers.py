"""``--workers N``: N processes on one port, each with its own reloader, living and dying as one."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import dns.message
import trio

from tests.helpers import TABLE, addresses, udp_exchange, write_config
from tests.test_cli import PROCESS_WAIT, Lines, command, environment, launch


def free_port() -> int:
    """A port free for both UDP and TCP right now."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


def assert_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", port))


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(child) for child in text)
    return found


async def start_group(
    nursery: trio.Nursery, config: Path, port: int
) -> tuple[trio.Process, Lines, Lines]:
    process, out, err, _try = await launch(
        nursery, config, "--listen", f"127.0.0.1:{port}", "--workers", "2"
    )
    with trio.fail_after(PROCESS_WAIT):
        # Both workers have loaded their own table.
        await err.wait_count("reload loaded generation=1", 2)
    return process, out, err


async def answers_from_many_ports(port: int, count: int = 40) -> set[str]:
    """``www.example.com`` asked from ``count`` source ports (spread over the workers)."""
    seen: set[str] = set()
    for _ in range(count):
        wire = dns.message.make_query("www.example.com", "A").to_wire()
        reply = await udp_exchange(("127.0.0.1", port), wire)
        assert reply is not None
        seen.update(addresses(dns.message.from_wire(reply)))
    return seen


async def test_two_workers_share_a_port_reload_together_and_stop_together(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    port = free_port()
    async with trio.open_nursery() as nursery:
        process, out, err = await start_group(nursery, config, port)
        workers = children(process.pid)
        assert len(workers) == 2
        assert await answers_from_many_ports(port) == {"192.0.2.10"}

        table = dict(TABLE)
        table["www.example.com"] = ["192.0.2.44"]
        (tmp_path / "table.json").write_text(json.dumps(table))
        process.send_signal(signal.SIGHUP)  # forwarded to every worker
        with trio.fail_after(PROCESS_WAIT):
            await err.wait_count("reload loaded generation=2", 2)
        assert await answers_from_many_ports(port) == {"192.0.2.44"}

        process.send_signal(signal.SIGTERM)
        with trio.fail_after(PROCESS_WAIT):
            assert await process.wait() == 0
            await out.wait_closed()
            await err.wait_closed()
        assert_port_free(port)  # no worker is left holding it


async def test_a_second_group_cannot_share_the_port(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    port = free_port()
    async with trio.open_nursery() as nursery:
        process, out, err = await start_group(nursery, config, port)
        with trio.fail_after(PROCESS_WAIT):
            second = await trio.run_process(
                command(
                    "serve",
                    "--config",
                    str(config),
                    "--listen",
                    f"127.0.0.1:{port}",
                    "--workers",
                    "2",
                ),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=environment(),
            )
        assert second.returncode == 1
        assert second.stderr.decode().strip() == (
            f"cowdns: cannot listen on 127.0.0.1:{port}: Address already in use"
        )
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(PROCESS_WAIT):
            assert await process.wait() == 0
            await out.wait_closed()
            await err.wait_closed()
        assert any("stopped" in line for line in err.lines)
        assert not any("stopping the others" in line for line in err.lines)


async def test_a_dead_worker_takes_the_group_down(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    port = free_port()
    async with trio.open_nursery() as nursery:
        process, out, err = await start_group(nursery, config, port)
        first, _second = children(process.pid)
        os.kill(first, signal.SIGKILL)
        with trio.fail_after(PROCESS_WAIT):
            status = await process.wait()
            await out.wait_closed()
            await err.wait_closed()
        assert status != 0
        assert any("stopping the others" in line for line in err.lines)
    assert_port_free(port)


async def test_workers_need_fixed_ports(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with trio.fail_after(PROCESS_WAIT):
        result = await trio.run_process(
            command("serve", "--config", str(config), "--workers", "2"),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=environment(),
        )
    assert result.returncode == 2
    assert result.stderr.decode().strip() == (
        "cowdns: config error: --workers: needs fixed ports;"
        " port 0 picks a different one per worker"
    )
