"""The TOML config: the example loads, and every mistake names its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dns.name
import pytest

from cowdns.config import Config, ServerConfig, StoreConfig, load_config, parse_config
from cowdns.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

ZONE = """
[[zone]]
origin = "example.com"
"""


def write(folder: Path, text: str, name: str = "cowdns.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_the_example_config_loads() -> None:
    config = load_config(EXAMPLES / "cowdns.toml")
    assert config.base_dir == EXAMPLES
    assert config.server.listen == (("127.0.0.1", 1053),)
    assert config.server.mode == "cow"
    assert config.store.url == f"file:{EXAMPLES / 'table.json'}"
    assert config.store.reload_interval == 30.0
    assert config.store.state_file == EXAMPLES / "state.json"
    [zone] = config.zones
    assert zone.origin == dns.name.from_text("example.com")
    assert zone.ttl == 300
    assert zone.ns == (dns.name.from_text("ns1.example.com"), dns.name.from_text("ns2.example.com"))
    assert zone.soa.serial == 2024010101
    assert zone.soa.rname == dns.name.from_text("hostmaster.example.com")
    assert zone.soa.negative_ttl == 300


def test_defaults_for_a_minimal_config(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ZONE))
    assert config.server == ServerConfig()
    assert config.store == StoreConfig(url=f"file:{tmp_path.resolve() / 'table.json'}")
    [zone] = config.zones
    assert zone.soa.mname == dns.name.from_text("ns1.example.com")
    assert zone.soa.rname == dns.name.from_text("hostmaster.example.com")


def test_every_setting_is_read(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
[server]
listen = ["127.0.0.1:5300", "[::1]:5301"]
mode = "locked"
max_udp_payload = 4096
tcp_idle_timeout = 3
tcp_read_timeout = 1.5
tcp_max_connections = 10
inject_bug = "missing-runlock"
watchdog_threshold = 0.5

[store]
url = "http://192.0.2.1:8080/table.json"
reload_interval = 60
reload_jitter = 0
reload_deadline = 5
max_shrink = 0.25
state_file = "/var/lib/cowdns/state.json"

[[zone]]
origin = "Example.COM."
ttl = 60
ns = ["ns.example.net"]
[zone.soa]
serial = 4294967295
minimum = 30
ttl = 120

[[zone]]
origin = "example.net"
""",
        )
    )
    assert config.server == ServerConfig(
        listen=(("127.0.0.1", 5300), ("::1", 5301)),
        mode="locked",
        max_udp_payload=4096,
        tcp_idle_timeout=3.0,
        tcp_read_timeout=1.5,
        tcp_max_connections=10,
        inject_bug="missing-runlock",
        watchdog_threshold=0.5,
    )
    assert config.store == StoreConfig(
        url="http://192.0.2.1:8080/table.json",
        reload_interval=60.0,
        reload_jitter=0.0,
        reload_deadline=5.0,
        max_shrink=0.25,
        state_file=Path("/var/lib/cowdns/state.json"),
    )
    com, net = config.zones
    assert com.key == "example.com."
    assert com.ns == (dns.name.from_text("ns.example.net"),)
    assert com.soa.mname == dns.name.from_text("ns.example.net")  # defaults to the first NS
    assert (com.soa.serial, com.soa.negative_ttl) == (4294967295, 30)
    assert net.ttl == 300


BAD = [
    # (config text, key named, words in the message)
    pytest.param("bogus = 1\n" + ZONE, "bogus", "unknown key", id="unknown-top-level"),
    pytest.param("[server]\nport = 53\n" + ZONE, "server.port", "unknown key", id="unknown-server"),
    pytest.param("[store]\nreload = 5\n" + ZONE, "store.reload", "unknown key", id="unknown-store"),
    pytest.param(ZONE + "serial = 1\n", "zone[0].serial", "unknown key", id="unknown-zone-key"),
    pytest.param(
        ZONE + "[zone.soa]\nmin = 1\n", "zone[0].soa.min", "unknown key", id="unknown-soa-key"
    ),
    pytest.param("server = 5\n" + ZONE, "server", "expected a table", id="server-not-table"),
    pytest.param(ZONE + "soa = 5\n", "zone[0].soa", "expected a table", id="soa-not-table"),
    pytest.param(
        '[server]\nlisten = "127.0.0.1:53"\n' + ZONE,
        "server.listen",
        "expected list",
        id="listen-not-list",
    ),
    pytest.param(
        '[server]\nlisten = ["nohost"]\n' + ZONE,
        "server.listen[0]",
        "HOST:PORT",
        id="listen-nohost",
    ),
    pytest.param(
        '[server]\nlisten = ["127.0.0.1:53", "127.0.0.1:65536"]\n' + ZONE,
        "server.listen[1]",
        "HOST:PORT",
        id="listen-port-too-big",
    ),
    pytest.param(
        '[server]\nlisten = [":53"]\n' + ZONE, "server.listen[0]", "HOST:PORT", id="listen-no-host"
    ),
    pytest.param(
        '[server]\nlisten = ["127.0.0.1:"]\n' + ZONE,
        "server.listen[0]",
        "HOST:PORT",
        id="listen-no-port",
    ),
    pytest.param(
        "[server]\nlisten = [53]\n" + ZONE, "server.listen[0]", "HOST:PORT", id="listen-number"
    ),
    pytest.param(
        "[server]\nlisten = []\n" + ZONE, "server.listen", "at least one", id="listen-empty"
    ),
    pytest.param('[server]\nmode = "fast"\n' + ZONE, "server.mode", "cow, locked", id="bad-mode"),
    pytest.param("[server]\nmode = 1\n" + ZONE, "server.mode", "expected str", id="mode-type"),
    pytest.param(
        '[server]\ninject_bug = "segfault"\n' + ZONE,
        "server.inject_bug",
        "missing-runlock",
        id="unknown-inject-bug",
    ),
    pytest.param(
        "[server]\nmax_udp_payload = 100\n" + ZONE,
        "server.max_udp_payload",
        "out of range 512..65535",
        id="payload-too-small",
    ),
    pytest.param(
        "[server]\ntcp_max_connections = true\n" + ZONE,
        "server.tcp_max_connections",
        "expected int",
        id="bool-for-int",
    ),
    pytest.param(
        "[server]\ntcp_max_connections = 1.5\n" + ZONE,
        "server.tcp_max_connections",
        "expected int",
        id="float-for-int",
    ),
    pytest.param(
        "[server]\ntcp_idle_timeout = 0\n" + ZONE,
        "server.tcp_idle_timeout",
        "out of range",
        id="timeout-zero",
    ),
    pytest.param(
        '[store]\nreload_interval = "5m"\n' + ZONE,
        "store.reload_interval",
        "expected float",
        id="interval-string",
    ),
    pytest.param(
        "[store]\nreload_interval = inf\n" + ZONE,
        "store.reload_interval",
        "out of range",
        id="interval-inf",
    ),
    pytest.param(
        "[store]\nreload_jitter = nan\n" + ZONE,
        "store.reload_jitter",
        "out of range",
        id="jitter-nan",
    ),
    pytest.param(
        "[store]\nmax_shrink = 1.5\n" + ZONE, "store.max_shrink", "out of range", id="shrink-big"
    ),
    pytest.param("[store]\nurl = 5\n" + ZONE, "store.url", "expected str", id="url-type"),
    pytest.param("", "zone", "[[zone]]", id="no-zone"),
    pytest.param("zone = []\n", "zone", "[[zone]]", id="empty-zone-list"),
    pytest.param("[zone]\norigin = 'example.com'\n", "zone", "[[zone]]", id="zone-not-array"),
    pytest.param("[[zone]]\nttl = 5\n", "zone[0].origin", "missing", id="missing-origin"),
    pytest.param(
        ZONE + '[[zone]]\norigin = "EXAMPLE.com."\n',
        "zone[1].origin",
        "configured twice",
        id="duplicate-origin",
    ),
    pytest.param(
        '[[zone]]\norigin = "a..example.com"\n',
        "zone[0].origin",
        "not a DNS name",
        id="origin-empty-label",
    ),
    pytest.param(
        f'[[zone]]\norigin = "{"a" * 64}.example.com"\n',
        "zone[0].origin",
        "not a DNS name",
        id="origin-long-label",
    ),
    pytest.param('[[zone]]\norigin = "."\n', "zone[0].origin", "root", id="origin-root"),
    pytest.param("[[zone]]\norigin = 5\n", "zone[0].origin", "expected str", id="origin-type"),
    pytest.param(ZONE + "ttl = -1\n", "zone[0].ttl", "out of range", id="zone-ttl-negative"),
    pytest.param(ZONE + 'ns = "ns1.example.com"\n', "zone[0].ns", "expected list", id="ns-str"),
    pytest.param(
        ZONE + "[zone.soa]\nserial = 4294967296\n",
        "zone[0].soa.serial",
        "out of range",
        id="serial-too-big",
    ),
    pytest.param(
        ZONE + '[zone.soa]\nrname = "a..b"\n',
        "zone[0].soa.rname",
        "not a DNS name",
        id="bad-rname",
    ),
    pytest.param('[store]\nurl = "file:"\n' + ZONE, "store.url", "needs a path", id="file-no-path"),
    pytest.param(
        '[server]\nlisten = ["127.0.0.1:5300", "127.0.0.1:5300"]\n' + ZONE,
        "server.listen[1]",
        "listed twice",
        id="listen-twice",
    ),
    pytest.param(
        '[server]\nlisten = ["127.0.0.1:\u0665\u0663"]\n' + ZONE,
        "server.listen[0]",
        "HOST:PORT",
        id="listen-non-ascii-digits",
    ),
]


@pytest.mark.parametrize(("text", "key", "words"), BAD)
def test_config_errors_name_the_key(tmp_path: Path, text: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert caught.value.key == key
    assert words in caught.value.message
    assert str(caught.value).startswith(f"{key}: ")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "ns",
    [
        pytest.param('["ns1.example.com", "a..b"]', id="bad-name"),
        pytest.param('["ns1.example.com", 5]', id="not-a-string"),
    ],
)
def test_a_bad_ns_name_names_its_list_item(tmp_path: Path, ns: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, f"{ZONE}ns = {ns}\n"))
    assert caught.value.key == "zone[0].ns[1]"


def test_invalid_toml_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nmode = "cow\n' + ZONE)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == str(path)
    assert "not valid TOML" in caught.value.message
    assert "line 2" in caught.value.message
    assert "\n" not in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == str(path)
    assert caught.value.message == "no such file"


def test_a_folder_instead_of_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert caught.value.key == str(tmp_path)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("file:table.json", "{dir}/table.json", id="relative"),
        pytest.param("file:data/table.json", "{dir}/data/table.json", id="relative-subfolder"),
        pytest.param("file:/srv/table.json", "/srv/table.json", id="absolute"),
    ],
)
def test_file_store_url_is_resolved_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, expected: str
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    write(folder, f'[store]\nurl = "{url}"\nstate_file = "state.json"\n{ZONE}')
    # Loaded from another working directory, by a relative path.
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("etc/cowdns.toml"))
    assert config.base_dir == folder
    assert config.store.url == "file:" + expected.format(dir=folder)
    assert config.store.state_file == folder / "state.json"


def test_non_file_store_urls_are_kept_as_given(tmp_path: Path) -> None:
    url = "etcd://192.0.2.1:2379/cowdns/"
    config = load_config(write(tmp_path, f'[store]\nurl = "{url}"\n{ZONE}'))
    assert config.store.url == url


def test_unicode_origin_becomes_an_a_label() -> None:
    config = parse_config({"zone": [{"origin": "bücher.example.com"}]}, Path("/"))
    assert config.zones.zones[0].key == "xn--bcher-kva.example.com."


def test_with_overrides_replaces_only_what_is_given(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ZONE))
    changed = config.with_overrides(
        server_listen=(("127.0.0.1", 0),),
        server_mode="locked",
        server_inject_bug="missing-runlock",
        server_watchdog_threshold=2.0,
        store_url="file:/srv/table.json",
        store_reload_interval=5.0,
        store_state_file=Path("/srv/state.json"),
        store_max_shrink=None,  # None means "not given"
    )
    assert changed.server == ServerConfig(
        listen=(("127.0.0.1", 0),),
        mode="locked",
        inject_bug="missing-runlock",
        watchdog_threshold=2.0,
    )
    assert changed.store == StoreConfig(
        url="file:/srv/table.json",
        reload_interval=5.0,
        state_file=Path("/srv/state.json"),
    )
    assert changed.zones is config.zones
    # The original is a frozen value and stays as it was.
    assert config.server == ServerConfig()
    assert config.store.url == f"file:{tmp_path.resolve() / 'table.json'}"


def test_with_no_overrides_is_equal(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ZONE))
    same: Config = config.with_overrides(server_mode=None, store_url=None)
    assert (same.server, same.store) == (config.server, config.store)


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ZONE))
    target: Any = config.server
    with pytest.raises(AttributeError):
        target.mode = "locked"
