"""Logs an operator can read, and logs a pipeline can parse."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import dns.message
import pytest
import trio

from cowdns.config import LogConfig, load_config
from cowdns.errors import ConfigError
from cowdns.logs import JsonFormatter, setup_logging, template_fields
from tests.helpers import address, make_config, start_server, tcp_query, udp_query, write_config


def record(
    msg: str,
    *args: object,
    level: int = logging.INFO,
    name: str = "cowdns.test",
    extra: dict[str, object] | None = None,
    exc_info: bool = False,
) -> logging.LogRecord:
    """A record made the way a logger makes it (``extra`` lands on the record)."""
    info = sys.exc_info() if exc_info else None
    return logging.getLogger(name).makeRecord(
        name, level, __file__, 1, msg, args, info, extra=extra
    )


def formatted(rec: logging.LogRecord) -> dict[str, object]:
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    body = json.loads(line)
    assert isinstance(body, dict)
    return body


@pytest.mark.parametrize(
    ("template", "args", "fields"),
    [
        pytest.param(
            "reload loaded generation=%d names=%d version=%s duration=%.3fs rejected=%d",
            (7, 1200, "sha256:ab", 0.25, 2),
            {
                "generation": 7,
                "names": 1200,
                "version": "sha256:ab",
                "duration": 0.25,
                "rejected": 2,
            },
            id="reload-line",
        ),
        pytest.param("plain %s and %d", ("text", 3), {}, id="no-keys"),
        pytest.param("100%% done key=%s", ("v",), {"key": "v"}, id="percent-literal"),
        pytest.param("a=%s b=%s", ("only one",), {}, id="too-few-args"),
        pytest.param("a=%s", ("one", "two"), {}, id="too-many-args"),
        pytest.param("x.a=%s", ("dotted",), {}, id="not-a-bare-key"),
        pytest.param("lock %r: %s", ("table", "ok"), {}, id="no-equals"),
        pytest.param("nothing to fill", (), {}, id="no-args"),
    ],
)
def test_template_fields(
    template: str, args: tuple[object, ...], fields: dict[str, object]
) -> None:
    assert template_fields(template, args) == fields


def test_json_line_has_time_level_logger_message_and_the_template_fields() -> None:
    body = formatted(
        record(
            "reload loaded generation=%d names=%d version=%s duration=%.3fs rejected=%d",
            7,
            1200,
            "etag with spaces=odd",
            0.123456,
            0,
            name="cowdns.reload",
        )
    )
    assert body["level"] == "info"
    assert body["logger"] == "cowdns.reload"
    assert body["message"] == (
        "reload loaded generation=7 names=1200 version=etag with spaces=odd"
        " duration=0.123s rejected=0"
    )
    assert body["generation"] == 7
    assert body["version"] == "etag with spaces=odd"
    assert body["duration"] == 0.123456
    time = str(body["time"])
    assert time.endswith("+00:00") and "T" in time
    assert list(body)[:4] == ["time", "level", "logger", "message"]


def test_json_line_carries_extra_fields_and_never_overwrites_the_basics() -> None:
    body = formatted(
        record(
            "rejected table entry %s",
            "'x.example.com': bad",
            level=logging.WARNING,
            extra={"key": "x.example.com", "ips": ["192.0.2.1"], "where": Path("/tmp/t.json")},
        )
    )
    assert body["level"] == "warning"
    assert body["key"] == "x.example.com"
    assert body["ips"] == ["192.0.2.1"]
    assert body["where"] == "/tmp/t.json"  # not JSON itself: its text
    clash = formatted(record("level=%s", "fake"))
    assert clash["level"] == "info"


def test_json_line_carries_the_exception() -> None:
    try:
        raise ValueError("bad table")
    except ValueError:
        body = formatted(record("failed", level=logging.ERROR, exc_info=True))
    assert body["level"] == "error"
    assert "ValueError: bad table" in str(body["exception"])


@pytest.fixture
def root_logger() -> Iterator[None]:
    """Put the root logger back as pytest set it up."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("root_logger")
def test_setup_logging_json_writes_one_parseable_object_per_line() -> None:
    stream = io.StringIO()
    setup_logging("info", "json", stream)
    logging.getLogger("cowdns.test").info("first line=%d", 1)
    logging.getLogger("cowdns.test").debug("not at info")
    logging.getLogger("cowdns.test").warning("multi\nline")
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["first line=1", "multi\nline"]
    assert json.loads(lines[0])["line"] == 1


@pytest.mark.usefixtures("root_logger")
def test_setup_logging_text() -> None:
    stream = io.StringIO()
    setup_logging("warning", "text", stream)
    logging.getLogger("cowdns.test").info("quiet")
    logging.getLogger("cowdns.test").warning("loud")
    [line] = stream.getvalue().splitlines()
    assert line.endswith(" WARNING cowdns.test: loud")


async def test_real_reload_and_rejected_key_lines_as_json(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, "cowdns"):
        await start_server(nursery, make_config(tmp_path))
    lines = [formatted(r) for r in caplog.records]
    [loaded] = [line for line in lines if str(line["message"]).startswith("reload loaded")]
    assert loaded["logger"] == "cowdns.reload"
    assert (loaded["generation"], loaded["names"], loaded["rejected"]) == (1, 11, 2)
    rejected = [line for line in lines if str(line["message"]).startswith("rejected table entry")]
    assert len(rejected) == 2


@pytest.mark.parametrize("log_queries", [False, True])
async def test_query_lines_only_when_asked(
    nursery: trio.Nursery,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    log_queries: bool,
) -> None:
    config = make_config(tmp_path).with_overrides(log_queries=log_queries, admin_listen="off")
    running = await start_server(nursery, config)
    with caplog.at_level(logging.INFO, "cowdns.query"):
        await udp_query(address(running), dns.message.make_query("www.example.com", "AAAA"))
        await tcp_query(address(running), dns.message.make_query("nope.example.com", "A"))
    lines = [formatted(r) for r in caplog.records if r.name == "cowdns.query"]
    if not log_queries:
        assert lines == []
        return
    assert [(line["transport"], line["qname"], line["qtype"], line["rcode"]) for line in lines] == [
        ("udp", "www.example.com.", "AAAA", "NOERROR"),
        ("tcp", "nope.example.com.", "A", "NXDOMAIN"),
    ]
    assert (lines[0]["answers"], lines[1]["answers"]) == (1, 0)
    assert all(line["level"] == "info" for line in lines)


def test_log_section_of_the_config_file(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    base = path.read_text()
    assert load_config(path).log == LogConfig("info", "text", False)
    path.write_text(base + '\n[log]\nlevel = "WARNING"\nformat = "json"\nqueries = true\n')
    assert load_config(path).log == LogConfig("warning", "json", True)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        pytest.param('format = "xml"', "log.format", id="format"),
        pytest.param('level = "loud"', "log.level", id="level"),
        pytest.param('queries = "yes"', "log.queries", id="queries-not-bool"),
        pytest.param("colour = true", "log.colour", id="unknown-key"),
    ],
)
def test_log_section_mistakes_name_the_key(tmp_path: Path, section: str, key: str) -> None:
    path = write_config(tmp_path)
    path.write_text(path.read_text() + f"\n[log]\n{section}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == key
