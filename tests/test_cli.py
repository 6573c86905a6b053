"""The ``cowdns`` command as an operator runs it: a real process, real signals, dig."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from functools import partial
from io import StringIO
from pathlib import Path

import pytest
import trio

from cowdns.app import Running, serve
from tests.helpers import make_config, write_config

if shutil.which("dig") is None:  # pragma: no cover - make test installs it
    pytest.fail("dig is required (Debian package bind9-dnsutils)", pytrace=False)

# Bounds that only turn a hang into a failure: starting Python and cowdns takes
# well under a second.
PROCESS_WAIT = 30.0

ROOT = Path(__file__).resolve().parent.parent

TABLE: dict[str, object] = {
    "www.example.com": ["192.0.2.10", "2001:db8::10"],
    "api.example.com": {"ips": ["192.0.2.20"], "ttl": 60},
}

ZONE = """
[[zone]]
origin = "example.com"
"""


def environment() -> dict[str, str]:
    # The cowdns of this checkout, whatever the working directory.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cowdns", *args]


async def run_cowdns(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(PROCESS_WAIT):
        return await trio.run_process(
            command(*args),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=cwd,
            env=environment(),
        )


def stderr_lines(result: subprocess.CompletedProcess[bytes]) -> list[str]:
    return result.stderr.decode().splitlines()


async def write_toml(folder: Path, text: str) -> Path:
    path = trio.Path(folder / "cowdns.toml")
    await path.write_text(text)
    await trio.Path(folder / "table.json").write_text(json.dumps(TABLE))
    return Path(path)


class Lines:
    """The lines a child process writes to one pipe, as they arrive."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.lines: list[str] = []
        self.closed = False
        self._buffer = b""
        self._changed = trio.Event()

    async def pump(self) -> None:
        async for chunk in self.stream:
            *complete, self._buffer = (self._buffer + chunk).split(b"\n")
            self.lines.extend(line.decode() for line in complete)
            self._wake()
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, text: str) -> str:
        """The first line containing ``text``, once it has been written."""
        while True:
            for line in self.lines:
                if text in line:
                    return line
            if self.closed:
                raise AssertionError(f"{text!r} never came; got {self.lines}")
            await self._changed.wait()

    async def wait_count(self, text: str, count: int) -> None:
        """Until ``count`` lines containing ``text`` have been written."""
        while sum(text in line for line in self.lines) < count:
            if self.closed:
                raise AssertionError(f"{text!r} came fewer than {count} times; got {self.lines}")
            await self._changed.wait()

    async def wait_closed(self) -> None:
        while not self.closed:
            await self._changed.wait()


async def dig_short(try_line: str) -> list[str]:
    # Exactly the command the server printed, plus output options.
    assert try_line.startswith("try: dig ")
    args = [*try_line.removeprefix("try: ").split(), "+short", "+time=5", "+tries=1"]
    with trio.fail_after(PROCESS_WAIT):
        result = await trio.run_process(args, capture_stdout=True, check=False)
    assert result.returncode == 0, result
    return result.stdout.decode().split()


# -- serve ------------------------------------------------------------------------


async def launch(
    nursery: trio.Nursery, config: Path, *args: str
) -> tuple[trio.Process, Lines, Lines, str]:
    """Start ``cowdns serve`` (on a free port unless ``args`` say otherwise); the process,
    its stdout, stderr and try line."""
    process = await trio.lowlevel.open_process(
        command("serve", "--config", str(config), *(args or ("--listen", "127.0.0.1:0"))),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=config.parent,
        env=environment(),
    )
    assert process.stdout is not None and process.stderr is not None
    out, err = Lines(process.stdout), Lines(process.stderr)
    nursery.start_soon(out.pump)
    nursery.start_soon(err.pump)
    try:
        with trio.fail_after(PROCESS_WAIT):
            try_line = await out.wait_for("try:")
    except BaseException:
        process.kill()
        raise
    return process, out, err, try_line


async def stop(process: trio.Process, signum: signal.Signals, out: Lines, err: Lines) -> int:
    process.send_signal(signum)
    with trio.fail_after(PROCESS_WAIT):
        status = await process.wait()
        await out.wait_closed()
        await err.wait_closed()
    return status


async def test_serve_answers_reloads_on_sighup_and_stops_on_sigterm(tmp_path: Path) -> None:
    config = write_config(tmp_path, table=TABLE)
    async with trio.open_nursery() as nursery:
        process, out, err, try_line = await launch(nursery, config)
        try:
            match = re.fullmatch(
                r"cowdns listening on 127\.0\.0\.1:(\d+) \(udp\+tcp\), mode cow, pid (\d+)",
                out.lines[0],
            )
            assert match, out.lines
            assert int(match[2]) == process.pid
            port = int(match[1])
            assert port != 0
            assert out.lines[1] == try_line == f"try: dig @127.0.0.1 -p {port} www.example.com A"

            assert await dig_short(try_line) == ["192.0.2.10"]

            await trio.Path(tmp_path / "table.json").write_text(
                json.dumps({**TABLE, "www.example.com": ["192.0.2.99"]})
            )
            process.send_signal(signal.SIGHUP)
            with trio.fail_after(PROCESS_WAIT):
                await err.wait_for("reload loaded generation=2")
            assert await dig_short(try_line) == ["192.0.2.99"]

            status = await stop(process, signal.SIGTERM, out, err)
        finally:
            process.kill()
    assert status == 0, err.lines
    assert not any("Traceback" in line for line in err.lines), err.lines
    assert any("SIGHUP: reloading" in line for line in err.lines)
    assert any("SIGTERM: stopping" in line for line in err.lines)


async def test_ctrl_c_stops_cleanly(tmp_path: Path) -> None:
    config = write_config(tmp_path, table=TABLE)
    async with trio.open_nursery() as nursery:
        process, out, err, try_line = await launch(nursery, config)
        try:
            assert await dig_short(try_line) == ["192.0.2.10"]
            status = await stop(process, signal.SIGINT, out, err)
        finally:
            process.kill()
    assert status == 0, err.lines
    assert not any("Traceback" in line for line in err.lines), err.lines


async def test_serve_keeps_the_table_when_a_sighup_reload_fails(tmp_path: Path) -> None:
    config = write_config(tmp_path, table=TABLE)
    async with trio.open_nursery() as nursery:
        process, out, err, try_line = await launch(nursery, config)
        try:
            assert await dig_short(try_line) == ["192.0.2.10"]
            await trio.Path(tmp_path / "table.json").write_text('{"www.example.com": [')
            process.send_signal(signal.SIGHUP)
            with trio.fail_after(PROCESS_WAIT):
                line = await err.wait_for("reload failed")
            assert "table.json" in line and "invalid JSON" in line
            assert await dig_short(try_line) == ["192.0.2.10"]
            status = await stop(process, signal.SIGTERM, out, err)
        finally:
            process.kill()
    assert status == 0, err.lines


async def test_signals_are_handled_once_listening_is_announced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An operator's script waits for the listening line, then may send SIGHUP at once.
    # Whatever handles SIGHUP when that line is written is what such a SIGHUP meets.
    at_announce: list[object] = []

    class Stdout(StringIO):
        def write(self, text: str) -> int:
            if text.startswith("cowdns listening on"):
                at_announce.append(signal.getsignal(signal.SIGHUP))
            return super().write(text)

    monkeypatch.setattr(sys, "stdout", Stdout())
    config = make_config(tmp_path)
    async with trio.open_nursery() as nursery:
        running: Running = await nursery.start(
            partial(serve, config, handle_signals=True, announce=True)
        )
        running.stop()
    [handler] = at_announce
    assert callable(handler), f"SIGHUP handler when listening is announced: {handler!r}"


# -- failures an operator must be able to read ------------------------------------


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        pytest.param("[server]\nbogus = 1\n" + ZONE, "server.bogus", id="unknown-key"),
        pytest.param('[server]\nmode = "fast"\n' + ZONE, "server.mode", id="bad-mode"),
        pytest.param('[server]\nlisten = ["nohost"]\n' + ZONE, "server.listen[0]", id="bad-listen"),
        pytest.param("[server]\n", "zone", id="no-zone"),
        pytest.param(
            '[store]\nurl = "gopher://192.0.2.1/"\n' + ZONE, "store.url", id="bad-store-url"
        ),
    ],
)
async def test_config_error_exits_2_with_one_line(tmp_path: Path, toml: str, key: str) -> None:
    config = await write_toml(tmp_path, toml)
    result = await run_cowdns("serve", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    [line] = stderr_lines(result)
    assert line.startswith(f"cowdns: config error: {key}: "), line
    assert result.stdout == b""


async def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = await run_cowdns("serve", "--config", "nowhere.toml", cwd=tmp_path)
    assert result.returncode == 2
    [line] = stderr_lines(result)
    assert line == "cowdns: config error: nowhere.toml: no such file"


async def test_invalid_toml_exits_2_naming_the_line(tmp_path: Path) -> None:
    config = await write_toml(tmp_path, '[server]\nmode = "cow\n' + ZONE)
    result = await run_cowdns("serve", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    [line] = stderr_lines(result)
    assert str(config) in line and "line 2" in line


@pytest.mark.parametrize(
    ("args", "words"),
    [
        pytest.param(["--listen", "nohost"], "--listen", id="listen-nohost"),
        pytest.param(["--listen", "127.0.0.1:99999"], "--listen", id="listen-port-too-big"),
        pytest.param(["--mode", "fast"], "--mode", id="mode"),
        pytest.param(["--reload-interval", "0"], "--reload-interval", id="interval-zero"),
        pytest.param(["--reload-interval", "nan"], "--reload-interval", id="interval-nan"),
        pytest.param(["--reload-interval", "1e-300"], "--reload-interval", id="interval-tiny"),
        pytest.param(["--watchdog-threshold", "nan"], "--watchdog-threshold", id="watchdog-nan"),
        pytest.param(["--watchdog-threshold", "inf"], "--watchdog-threshold", id="watchdog-inf"),
    ],
)
async def test_bad_flags_are_usage_errors(tmp_path: Path, args: list[str], words: str) -> None:
    config = await write_toml(tmp_path, ZONE)
    result = await run_cowdns("serve", "--config", str(config), *args, cwd=tmp_path)
    assert result.returncode == 2
    err = result.stderr.decode()
    assert err.startswith("usage: cowdns serve")
    assert f"argument {words}" in err
    assert "Traceback" not in err


async def test_no_command_is_a_usage_error(tmp_path: Path) -> None:
    result = await run_cowdns(cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.decode().startswith("usage: cowdns")


@pytest.mark.parametrize("kind", ["udp", "tcp"])
async def test_port_in_use_exits_1_with_one_line(tmp_path: Path, kind: str) -> None:
    config = await write_toml(tmp_path, ZONE)
    socket_type = trio.socket.SOCK_DGRAM if kind == "udp" else trio.socket.SOCK_STREAM
    with trio.socket.socket(trio.socket.AF_INET, socket_type) as taken:
        await taken.bind(("127.0.0.1", 0))
        if kind == "tcp":
            taken.listen(1)
        port = taken.getsockname()[1]
        result = await run_cowdns(
            "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}", cwd=tmp_path
        )
    assert result.returncode == 1
    [line] = stderr_lines(result)
    assert line == f"cowdns: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert result.stdout == b""
