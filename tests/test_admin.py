"""The admin listener as an operator uses it: scrape /metrics while real queries flow,
probe /health and /ready, read /table, POST /reload, and run it from the command line."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from cowdns import __version__
from cowdns.admin import AdminListenError
from cowdns.app import Running, serve
from cowdns.config import AdminConfig, Config, load_config
from tests.helpers import (
    ANSWER_WAIT,
    TABLE,
    address,
    addresses,
    make_config,
    start_server,
    tcp_query,
    udp_exchange,
    udp_query,
    write_config,
)
from tests.test_cli import PROCESS_WAIT, Lines, command, environment

LOOPBACK_ANY_PORT = ("127.0.0.1", 0)


def admin_config(folder: Path, mode: str = "cow", **overrides: object) -> Config:
    """The test zones with the admin listener on a free loopback port."""
    return make_config(folder, mode=mode).with_overrides(
        admin_listen=LOOPBACK_ANY_PORT, **overrides
    )


@pytest.fixture
async def running(nursery: trio.Nursery, tmp_path: Path, mode: str) -> Running:
    return await start_server(nursery, admin_config(tmp_path, mode))


@pytest.fixture
async def client(running: Running) -> AsyncIterator[httpx.AsyncClient]:
    async with admin_client(running) as http:
        yield http


def admin_client(running: Running) -> httpx.AsyncClient:
    assert running.admin_address is not None
    host, port = running.admin_address
    return httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=ANSWER_WAIT)


class Scrape:
    """One /metrics page, parsed by prometheus_client's own parser."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        self.types: dict[str, str] = {}
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def __call__(self, name: str, **labels: str) -> float:
        """A sample's value; 0 for a label set never seen (a counter that has not moved)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(client: httpx.AsyncClient) -> Scrape:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return Scrape(response.text)


def edit_table(folder: Path, **changes: object) -> None:
    table = dict(TABLE)
    for name, value in changes.items():
        key = name.replace("_", "-") + ".example.com"
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    (folder / "table.json").write_text(json.dumps(table))


def query_bytes(name: str, rdtype: str = "A", **kwargs: object) -> bytes:
    return dns.message.make_query(name, rdtype, **kwargs).to_wire()  # type: ignore[arg-type]


# -- /metrics moves with the traffic ------------------------------------------------


async def test_answers_are_counted_by_transport_type_and_rcode(
    running: Running, client: httpx.AsyncClient
) -> None:
    where = address(running)
    before = await scrape(client)
    for _ in range(7):
        response = await udp_query(where, dns.message.make_query("www.example.com", "A"))
        assert addresses(response) == ["192.0.2.10"]
    for _ in range(3):
        response = await tcp_query(where, dns.message.make_query("missing.example.com", "AAAA"))
        assert response.rcode() == dns.rcode.NXDOMAIN
    after = await scrape(client)

    def moved(name: str, **labels: str) -> float:
        return after(name, **labels) - before(name, **labels)

    assert moved("cowdns_queries_total", transport="udp", qtype="A", rcode="NOERROR") == 7
    assert moved("cowdns_queries_total", transport="tcp", qtype="AAAA", rcode="NXDOMAIN") == 3
    assert after.types["cowdns_queries"] == "counter"
    assert moved("cowdns_answer_latency_seconds_count") == 10
    assert moved("cowdns_answer_latency_seconds_bucket", le="+Inf") == 10
    assert moved("cowdns_answer_latency_seconds_sum") > 0
    # Each question's first answer is built; the repeats come from the response cache.
    assert moved("cowdns_cache_misses_total") == 2
    assert moved("cowdns_cache_hits_total") == 8


async def test_malformed_dropped_and_truncated_packets_are_counted(
    running: Running, client: httpx.AsyncClient
) -> None:
    where = address(running)
    before = await scrape(client)
    # A header that says one question, then garbage: FORMERR with the ID echoed.
    garbage = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff\xff\xff"
    reply = await udp_exchange(where, garbage)
    assert reply is not None and reply[:2] == b"\x12\x34"
    assert dns.rcode.from_flags(reply[2] << 8 | reply[3], 0) == dns.rcode.FORMERR
    # Too short to answer: dropped silently.  The socket is read in order, so once the
    # next query's answer is back, the drop has been counted.
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        await sock.connect(where)
        await sock.send(b"\x00\x01\x02")
        await sock.send(query_bytes("www.example.com"))
        with trio.fail_after(ANSWER_WAIT):
            assert dns.message.from_wire(await sock.recv(65535)).answer
    # 100 AAAA records do not fit in 512 bytes: TC=1 over UDP.
    big = await udp_query(where, dns.message.make_query("big.example.com", "AAAA"))
    assert big.flags & dns.flags.TC
    after = await scrape(client)

    def moved(name: str, **labels: str) -> float:
        return after(name, **labels) - before(name, **labels)

    assert moved("cowdns_malformed_packets_total", transport="udp") == 1
    assert moved("cowdns_malformed_packets_total", transport="tcp") == 0
    assert moved("cowdns_queries_total", transport="udp", qtype="TYPE0", rcode="FORMERR") == 1
    assert moved("cowdns_dropped_packets_total", transport="udp") == 1
    assert moved("cowdns_truncated_answers_total", transport="udp") == 1
    assert moved("cowdns_queries_total", transport="udp", qtype="AAAA", rcode="NOERROR") == 1


async def test_the_served_table_is_described(running: Running, client: httpx.AsyncClient) -> None:
    metrics = await scrape(client)
    table = (await client.get("/table")).json()
    assert metrics("cowdns_table_names") == table["names"] == 11
    assert metrics("cowdns_table_generation") == table["generation"] == 1
    source = running.reloader.source.description
    assert metrics("cowdns_table_info", version=table["version"], source=source) == 1
    assert metrics("cowdns_table_loaded_timestamp_seconds") == pytest.approx(
        table["loaded_at_unix"]
    )
    assert metrics("cowdns_table_age_seconds") >= 0
    assert metrics("cowdns_reloads_total", outcome="loaded") == 1
    assert metrics("cowdns_reloads_total", outcome="failed") == 0
    assert metrics("cowdns_reload_duration_seconds_count") == 1
    # bad-address.example.com and www.example.org are in the test table on purpose.
    assert metrics("cowdns_rejected_keys_total") == 2
    mode = running.config.server.mode
    assert metrics("cowdns_build_info", version=__version__, mode=mode) == 1
    locked = mode == "locked"
    assert ("cowdns_lock_readers" in metrics.types) == locked
    if locked:
        assert metrics("cowdns_lock_readers") == 0
        assert metrics("cowdns_lock_writer_wait_seconds") == 0
        assert metrics("cowdns_lock_watchdog_trips_total") == 0
        assert metrics("cowdns_lock_healthy") == 1


# -- /table and POST /reload --------------------------------------------------------


async def test_table_endpoint(running: Running, client: httpx.AsyncClient) -> None:
    response = await client.get("/table")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    served = running.reloader.table.table()
    assert body["generation"] == served.generation == 1
    assert body["names"] == len(served.entries) == 11
    assert body["version"] == served.version
    assert body["source"] == running.reloader.source.description
    assert body["source"].endswith("table.json")
    assert body["mode"] == running.config.server.mode
    assert body["loaded_at_unix"] == served.loaded_at
    iso = body["loaded_at"]
    assert iso.endswith("+00:00") and iso[:4].isdigit() and "T" in iso
    assert body["last_reload"]["outcome"] == "loaded"


async def test_post_reload_after_editing_the_table(
    running: Running, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    where = address(running)
    before = await scrape(client)
    edit_table(tmp_path, www=["192.0.2.77"], new=["192.0.2.78"], worse=["not-an-address"])
    response = await client.post("/reload")
    assert response.status_code == 200
    result = response.json()
    assert result["outcome"] == "loaded"
    assert result["generation"] == 2
    assert result["names"] == 12
    assert result["rejected"] == 3
    assert result["error"] == ""
    reply = await udp_query(where, dns.message.make_query("www.example.com", "A"))
    assert addresses(reply) == ["192.0.2.77"]

    after = await scrape(client)
    assert (
        after("cowdns_reloads_total", outcome="loaded")
        - before("cowdns_reloads_total", outcome="loaded")
        == 1
    )
    assert after("cowdns_table_generation") == 2
    assert after("cowdns_table_names") == 12
    source = running.reloader.source.description
    assert after("cowdns_table_info", version=result["version"], source=source) == 1
    # Each bad key is reported once: only the new one counts.
    assert after("cowdns_rejected_keys_total") - before("cowdns_rejected_keys_total") == 1

    again = await client.post("/reload")
    assert (again.status_code, again.json()["outcome"]) == (200, "unchanged")
    forced = await client.post("/reload?force=1")
    assert (forced.status_code, forced.json()["outcome"]) == (200, "loaded")
    assert forced.json()["generation"] == 3
    final = await scrape(client)
    assert final("cowdns_reloads_total", outcome="unchanged") == 1
    assert final("cowdns_reload_duration_seconds_count") == 4


async def test_post_reload_reports_a_failed_and_a_refused_reload(
    running: Running, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    (tmp_path / "table.json").write_text('{"www.example.com": [')
    failed = await client.post("/reload")
    assert failed.status_code == 502
    assert failed.json()["outcome"] == "failed"
    assert "table.json" in failed.json()["error"]

    # Shrinking from 11 names to 1 trips the shrink guard...
    (tmp_path / "table.json").write_text(json.dumps({"www.example.com": ["192.0.2.5"]}))
    refused = await client.post("/reload")
    assert refused.status_code == 409
    assert refused.json()["outcome"] == "refused"
    assert refused.json()["generation"] == 1
    reply = await udp_query(address(running), dns.message.make_query("api.example.com", "A"))
    assert addresses(reply) == ["192.0.2.20", "192.0.2.21"]
    # ...and force overrides it.
    forced = await client.post("/reload", params={"force": "1"})
    assert forced.status_code == 200
    assert (forced.json()["outcome"], forced.json()["names"]) == ("loaded", 1)

    metrics = await scrape(client)
    assert metrics("cowdns_reloads_total", outcome="failed") == 1
    assert metrics("cowdns_reloads_total", outcome="refused") == 1
    assert metrics("cowdns_reloads_total", outcome="loaded") == 2


# -- /health and /ready --------------------------------------------------------------


async def test_health_and_ready_when_all_is_well(client: httpx.AsyncClient) -> None:
    health = await client.get("/health")
    assert (health.status_code, health.text) == (200, "ok\n")
    ready = await client.get("/ready")
    assert (ready.status_code, ready.text) == (200, "ready: generation 1, 11 names\n")
    head = await client.head("/health")
    assert head.status_code == 200 and head.content == b""


@pytest.mark.cowdns_allow_held_locks
async def test_health_fails_once_the_injected_bug_blocks_a_reload_in_locked_mode(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    config = admin_config(
        tmp_path, "locked", server_inject_bug="missing-runlock", server_watchdog_threshold=0.2
    )
    running = await start_server(nursery, config)
    async with admin_client(running) as client:
        # Queries leak read holds, but nothing waits for the lock yet: healthy.
        for _ in range(3):
            await udp_query(address(running), dns.message.make_query("www.example.com", "A"))
        assert (await client.get("/health")).status_code == 200
        leaking = await scrape(client)
        assert leaking("cowdns_lock_readers") == 3
        assert leaking("cowdns_lock_writers_waiting") == 0

        edit_table(tmp_path, www=["192.0.2.99"])
        running.reloader.trigger()
        with trio.fail_after(ANSWER_WAIT):
            await running.lock_tripped.wait()

        health = await client.get("/health")
        assert health.status_code == 503
        assert health.text.startswith("unhealthy: writer has waited")
        assert health.text.count("\n") == 1
        assert "engine.py" in health.text  # where the leaked read lock was taken
        stuck = await scrape(client)
        assert stuck("cowdns_lock_healthy") == 0
        assert stuck("cowdns_lock_watchdog_trips_total") == 1
        assert stuck("cowdns_lock_readers") == 3
        assert stuck("cowdns_lock_writers_waiting") == 1
        assert stuck("cowdns_lock_writer_wait_seconds") >= 0.2
        # Still ready: a table was loaded; it is the answering that stopped.
        assert (await client.get("/ready")).status_code == 200


async def test_health_stays_ok_in_cow_mode_with_the_same_flag(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    config = admin_config(
        tmp_path, "cow", server_inject_bug="missing-runlock", server_watchdog_threshold=0.2
    )
    running = await start_server(nursery, config)
    async with admin_client(running) as client:
        for _ in range(3):
            await udp_query(address(running), dns.message.make_query("www.example.com", "A"))
        edit_table(tmp_path, www=["192.0.2.99"])
        reload = await client.post("/reload")
        assert (reload.status_code, reload.json()["generation"]) == (200, 2)
        reply = await udp_query(address(running), dns.message.make_query("www.example.com", "A"))
        assert addresses(reply) == ["192.0.2.99"]
        health = await client.get("/health")
        assert (health.status_code, health.text) == (200, "ok\n")
        assert "cowdns_lock_healthy" not in (await scrape(client)).types


async def test_ready_only_once_a_table_is_loaded(nursery: trio.Nursery, tmp_path: Path) -> None:
    config = admin_config(tmp_path)
    (tmp_path / "table.json").unlink()  # the store is empty at start: nothing to serve
    running = await start_server(nursery, config)
    async with admin_client(running) as client:
        ready = await client.get("/ready")
        assert ready.status_code == 503
        assert ready.text.startswith("not ready: no table loaded yet (last reload failed: ")
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/table")).json()["generation"] == 0

        edit_table(tmp_path)
        assert (await client.post("/reload")).status_code == 200
        ready = await client.get("/ready")
        assert (ready.status_code, ready.text) == (200, "ready: generation 1, 11 names\n")


# -- HTTP itself ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        pytest.param("GET", "/", 404, None, id="root"),
        pytest.param("GET", "/metrics/", 404, None, id="trailing-slash"),
        pytest.param("GET", "/favicon.ico", 404, None, id="unknown"),
        pytest.param("POST", "/metrics", 405, "GET, HEAD", id="post-metrics"),
        pytest.param("DELETE", "/table", 405, "GET, HEAD", id="delete-table"),
        pytest.param("GET", "/reload", 405, "POST", id="get-reload"),
        pytest.param("PUT", "/reload", 405, "POST", id="put-reload"),
    ],
)
async def test_unknown_paths_and_wrong_methods(
    client: httpx.AsyncClient, method: str, path: str, status: int, allow: str | None
) -> None:
    response = await client.request(method, path)
    assert response.status_code == status
    assert response.headers.get("allow") == allow
    assert response.text.endswith("\n") and response.text.count("\n") == 1


# -- binding ----------------------------------------------------------------------------


def listening_tcp_sockets() -> set[int]:
    """Socket inodes of this process that listen on TCP (Linux /proc)."""
    listening: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as fh:
            for line in list(fh)[1:]:
                fields = line.split()
                if fields[3] == "0A":  # LISTEN
                    listening.add(int(fields[9]))
    ours: set[int] = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            ours.add(int(target[len("socket:[") : -1]))
    return listening & ours


@pytest.mark.parametrize(("admin", "extra"), [("off", 0), (LOOPBACK_ANY_PORT, 1)])
async def test_admin_off_binds_nothing(tmp_path: Path, admin: object, extra: int) -> None:
    before = listening_tcp_sockets()
    config = make_config(tmp_path).with_overrides(admin_listen=admin)
    async with trio.open_nursery() as nursery:
        running = await start_server(nursery, config)
        # One TCP listener for DNS, plus the admin listener when it is on.
        assert len(listening_tcp_sockets() - before) == 1 + extra
        assert (running.admin_address is None) == (admin == "off")
        running.stop()
    assert listening_tcp_sockets() - before == set()


def test_admin_listen_off_in_the_config_file(tmp_path: Path) -> None:
    path = write_config(tmp_path)  # its [admin] section says listen = "off"
    assert '[admin]\nlisten = "off"' in path.read_text()
    assert load_config(path).admin == AdminConfig(listen=None, configured=True)
    path.write_text(path.read_text().replace('"off"', '"[::1]:9200"'))
    assert load_config(path).admin == AdminConfig(listen=("::1", 9200), configured=True)


def test_the_default_admin_address_is_loopback() -> None:
    assert AdminConfig().listen == ("127.0.0.1", 9153)
    assert not AdminConfig().configured


def taken_port() -> socket.socket:
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    return taken


async def test_a_configured_admin_address_in_use_stops_start_up(tmp_path: Path) -> None:
    with taken_port() as taken:
        port = taken.getsockname()[1]
        config = make_config(tmp_path).with_overrides(admin_listen=("127.0.0.1", port))
        with pytest.raises(AdminListenError) as caught:
            await serve(config)  # fails before it would serve anything
    assert caught.value.where == f"127.0.0.1:{port}"
    assert str(caught.value) == f"admin listener 127.0.0.1:{port}: Address already in use"


async def test_a_default_admin_address_in_use_only_costs_the_admin_listener(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with taken_port() as taken:
        port = taken.getsockname()[1]
        base = make_config(tmp_path)
        config = replace(base, admin=AdminConfig(listen=("127.0.0.1", port), configured=False))
        with caplog.at_level(logging.WARNING, "cowdns"):
            running = await start_server(nursery, config)
    assert running.admin_address is None
    reply = await udp_query(address(running), dns.message.make_query("www.example.com", "A"))
    assert addresses(reply) == ["192.0.2.10"]
    [warning] = [r.getMessage() for r in caplog.records if r.name == "cowdns"]
    assert f"default address 127.0.0.1:{port} is in use" in warning


# -- from the command line ---------------------------------------------------------------


async def test_cowdns_serve_with_admin_and_json_logs(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    args = ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--log-format", "json"]
    process = await trio.lowlevel.open_process(
        command("serve", "--config", str(config), *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=environment(),
    )
    assert process.stdout is not None and process.stderr is not None
    out, err = Lines(process.stdout), Lines(process.stderr)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(out.pump)
            nursery.start_soon(err.pump)
            with trio.fail_after(PROCESS_WAIT):
                await out.wait_for("try:")
                line = await err.wait_for("admin listening on")
            record = json.loads(line)
            url = record["message"].split()[3]
            assert url.startswith("http://127.0.0.1:") and not url.endswith(":0/")
            async with httpx.AsyncClient(base_url=url, timeout=ANSWER_WAIT) as client:
                metrics = await scrape(client)
                assert metrics("cowdns_table_generation") == 1
                assert (await client.get("/health")).text == "ok\n"
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(PROCESS_WAIT):
                status = await process.wait()
                await err.wait_closed()
    finally:
        if process.returncode is None:
            process.kill()
    assert status == 0, err.lines
    records = [json.loads(line) for line in err.lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)
    [loaded] = [r for r in records if r["message"].startswith("reload loaded")]
    assert loaded["logger"] == "cowdns.reload" and loaded["level"] == "info"
    assert (loaded["generation"], loaded["names"], loaded["rejected"]) == (1, 11, 2)
    assert loaded["version"].startswith("sha256:")
    assert isinstance(loaded["duration"], float)
    rejected = [r for r in records if r["message"].startswith("rejected table entry")]
    assert len(rejected) == 2 and all(r["level"] == "warning" for r in rejected)


async def test_admin_flag_must_be_an_address_or_off(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with trio.fail_after(PROCESS_WAIT):
        result = await trio.run_process(
            command("serve", "--config", str(config), "--admin", "nowhere"),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=tmp_path,
            env=environment(),
        )
    assert result.returncode == 2
    err = result.stderr.decode()
    assert "argument --admin" in err and '"off"' in err and "Traceback" not in err


async def test_admin_port_in_use_exits_1_with_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with taken_port() as taken:
        port = taken.getsockname()[1]
        with trio.fail_after(PROCESS_WAIT):
            result = await trio.run_process(
                command(
                    "serve",
                    "--config",
                    str(config),
                    "--listen",
                    "127.0.0.1:0",
                    "--admin",
                    f"127.0.0.1:{port}",
                ),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                cwd=tmp_path,
                env=environment(),
            )
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert lines[-1] == f"cowdns: cannot listen on 127.0.0.1:{port} (admin): Address already in use"


async def test_replies_carried_over_a_reload_are_counted(
    running: Running, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    where = address(running)
    await udp_query(where, dns.message.make_query("api.example.com", "A"))
    before = await scrape(client)
    edit_table(tmp_path, www=["192.0.2.99"])  # www changes, api does not
    assert (await running.reloader.reload()).outcome == "loaded"
    response = await udp_query(where, dns.message.make_query("api.example.com", "A"))
    assert addresses(response) == ["192.0.2.20", "192.0.2.21"]
    after = await scrape(client)
    # Locked mode clears its cache under the write lock: nothing is carried there.
    expected = 1 if running.config.server.mode == "cow" else 0
    assert after("cowdns_cache_carried_total") - before("cowdns_cache_carried_total") == expected
