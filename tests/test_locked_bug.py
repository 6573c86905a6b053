"""The original bug on demand: a lookup that forgets its read-unlock.

In locked mode it works until the first reload asks for the write lock; then
the writer waits forever and every new reader queues behind it.  In
copy-on-write mode the same flag has nothing to leak.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import dns.message
import pytest
import trio

from cowdns.app import Running
from cowdns.engine import leaky_lookup
from tests.helpers import (
    ANSWER_WAIT,
    SILENCE_WAIT,
    TABLE,
    address,
    addresses,
    frame,
    make_config,
    start_server,
    udp_exchange,
    udp_query,
)

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.cowdns_allow_held_locks


def leak_site() -> str:
    lines, first = inspect.getsourcelines(leaky_lookup)
    offset = next(i for i, line in enumerate(lines) if "acquire_read" in line)
    return f"engine.py:{first + offset}"


async def bugged(nursery: trio.Nursery, tmp_path: Path, mode: str) -> Running:
    config = make_config(tmp_path, mode=mode).with_overrides(
        server_inject_bug="missing-runlock", server_watchdog_threshold=0.2
    )
    return await start_server(nursery, config)


def edit_table(folder: Path, www: str) -> None:
    table = dict(TABLE)
    table["www.example.com"] = [www]
    (folder / "table.json").write_text(json.dumps(table))


async def test_locked_mode_with_the_bug_answers_until_a_reload_then_stops(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    running = await bugged(nursery, tmp_path, "locked")
    where = address(running)
    # For as long as no writer comes, every query is answered: the leak is invisible.
    for _ in range(50):
        response = await udp_query(where, dns.message.make_query("www.example.com", "A"))
        assert addresses(response) == ["192.0.2.10"]
    assert running.lock_health is not None and running.lock_health.healthy

    # The periodic reload arrives and asks for the write lock...
    edit_table(tmp_path, "192.0.2.99")
    running.reloader.trigger()
    with trio.fail_after(ANSWER_WAIT):
        await running.lock_tripped.wait()

    # ...and from now on nobody is answered, over UDP or TCP, whatever the name.
    for name in ["www.example.com", "missing.example.com"]:
        wire = dns.message.make_query(name, "A").to_wire()
        assert await udp_exchange(where, wire, wait=SILENCE_WAIT) is None
    stream = await trio.open_tcp_stream(*where)
    async with stream:
        await stream.send_all(frame(dns.message.make_query("api.example.com", "A").to_wire()))
        with trio.move_on_after(SILENCE_WAIT) as silent:
            await stream.receive_some(65536)
        assert silent.cancelled_caught

    # The watchdog named the holders, where they took the lock, and marked us unhealthy.
    assert not running.lock_health.healthy
    assert leak_site() in running.lock_health.reason
    errors = [r.getMessage() for r in caplog.records if r.name == "cowdns.lock"]
    assert len(errors) == 1
    assert "writer has waited" in errors[0] and leak_site() in errors[0]


async def test_cow_mode_with_the_same_flag_keeps_answering_across_reloads(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    running = await bugged(nursery, tmp_path, "cow")
    where = address(running)
    for generation in range(2, 12):
        www = f"192.0.2.{100 + generation}"
        edit_table(tmp_path, www)
        result = await running.reloader.reload()
        assert (result.outcome, result.generation) == ("loaded", generation)
        for _ in range(5):
            response = await udp_query(where, dns.message.make_query("www.example.com", "A"))
            assert addresses(response) == [www]
    assert running.lock_health is None


async def test_locked_mode_without_the_bug_keeps_answering_across_reloads(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    running = await start_server(nursery, make_config(tmp_path, mode="locked"))
    where = address(running)
    for generation in range(2, 7):
        www = f"192.0.2.{100 + generation}"
        edit_table(tmp_path, www)
        result = await running.reloader.reload()
        assert (result.outcome, result.generation) == ("loaded", generation)
        response = await udp_query(where, dns.message.make_query("www.example.com", "A"))
        assert addresses(response) == [www]
    assert running.lock_health is not None and running.lock_health.healthy


PLUGIN_TEST = '''
import dns.message
import trio

from cowdns.app import serve
from cowdns.config import load_config

CONFIG = """
[server]
listen = ["127.0.0.1:0"]
mode = "locked"
{bug}
[store]
url = "file:table.json"
reload_interval = 3600
[[zone]]
origin = "example.com"
"""


async def ask(tmp_path, nursery, bug):
    (tmp_path / "table.json").write_text('{"www.example.com": ["192.0.2.10"]}')
    (tmp_path / "cowdns.toml").write_text(CONFIG.format(bug=bug))
    running = await nursery.start(serve, load_config(tmp_path / "cowdns.toml"))
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        await sock.connect(running.addresses[0])
        await sock.send(dns.message.make_query("www.example.com", "A").to_wire())
        with trio.fail_after(5):
            reply = dns.message.from_wire(await sock.recv(65535))
    assert reply.answer[0][0].address == "192.0.2.10"


async def test_only_queries_with_the_bug(tmp_path, nursery):
    await ask(tmp_path, nursery, 'inject_bug = "missing-runlock"')


async def test_only_queries_without_the_bug(tmp_path, nursery):
    await ask(tmp_path, nursery, "")
'''


def test_pytest_plugin_fails_a_query_only_test_of_the_injected_bug(
    pytester: pytest.Pytester,
) -> None:
    # No reload runs in these tests, so nothing deadlocks and both would pass;
    # the plugin makes the held lock itself the failure, naming where it was taken.
    pytester.makeini("[pytest]\ntrio_mode = true\ncowdns_lockcheck = true\n")
    pytester.makepyfile(test_bug=PLUGIN_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_only_queries_with_the_bug*",
            f"*{leak_site()}*",
        ]
    )
    assert "FAILED test_bug.py::test_only_queries_with_the_bug" in result.stdout.str()
