"""Big table bodies are decoded entry by entry, with the same result and errors as json.loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from cowdns.errors import SourceError
from cowdns.store.sources.file import SMALL_BODY, decode_json_object

PAD = b" " * (SMALL_BODY + 1)  # forces the incremental decoder


async def test_big_body_decodes_like_json_loads_and_yields_to_the_loop() -> None:
    table = {f"h{i}.example.com": [f"192.0.2.{i % 250 + 1}"] for i in range(30_000)}
    table["t.example.com"] = {"ips": ["2001:db8::1"], "ttl": 60}  # type: ignore[assignment]
    table["ü.example.com"] = ["192.0.2.1"]
    data = json.dumps(table, indent=1).encode() + PAD
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await trio.lowlevel.checkpoint()
            ticks += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        decoded = await decode_json_object(data, "t")
        nursery.cancel_scope.cancel()
    assert decoded == json.loads(data)
    assert ticks >= 10  # other tasks ran while it decoded


@pytest.mark.parametrize(
    ("body", "line", "column", "message"),
    [
        (b'{"a": [1,2}', 1, 11, "Expecting ',' delimiter"),
        (b'{"a": 1,}', 1, 9, "Expecting property name"),
        (b'{"a" 1}', 1, 6, "Expecting ':' delimiter"),
        (b'{"a": 1} x', 1, 10, "Extra data"),
        (b'{\n"a":\n nul}', 3, 2, "Expecting value"),
        (b'{"a": "unterminated', 1, 7, "Unterminated string"),
    ],
)
async def test_big_body_errors_name_line_and_column(
    body: bytes, line: int, column: int, message: str
) -> None:
    with pytest.raises(SourceError) as caught:
        await decode_json_object(body + PAD, "file:t.json")
    text = str(caught.value)
    assert text.startswith(f"file:t.json: invalid JSON at line {line} column {column}: "), text
    assert message in text
    with pytest.raises(json.JSONDecodeError) as stdlib:
        json.loads(body)
    assert (stdlib.value.lineno, stdlib.value.colno) == (line, column)


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"\xff\xfe{}"])
async def test_big_body_that_is_not_an_object_is_refused(body: bytes) -> None:
    with pytest.raises(SourceError):
        await decode_json_object(body + PAD, "t")


async def test_duplicate_keys_keep_the_last_like_json_loads() -> None:
    body = b'{"a": 1, "b": 2, "a": 3}' + PAD
    assert await decode_json_object(body, "t") == {"a": 3, "b": 2}


def test_json_object_reads_members_lazily_like_json_loads() -> None:
    from cowdns.store.sources.file import JsonObject

    body = (
        '{"a.example.com": ["192.0.2.1"], "b.example.com": {"ips": ["2001:db8::1"]},'
        ' "a.example.com": []}'
    )
    lazy = JsonObject(body, "t")
    assert dict(lazy.items()) == json.loads(body)
    assert list(lazy) == ["a.example.com", "b.example.com", "a.example.com"]
    assert lazy["a.example.com"] == [] and len(lazy) == 2
    broken = JsonObject('{"a.example.com": ["192.0.2.1"], "b": ', "t")
    with pytest.raises(SourceError, match="line 1 column 39: Expecting value"):
        list(broken.items())


async def test_a_small_file_with_a_name_twice_reports_it(tmp_path: Path) -> None:
    from cowdns.config import parse_config
    from cowdns.store.reloader import Reloader
    from cowdns.store.snapshot import SnapshotHolder
    from cowdns.store.sources.file import FileSource

    zones = parse_config({"zone": [{"origin": "example.com"}]}, tmp_path).zones
    table = tmp_path / "table.json"
    table.write_text('{"www.example.com": ["192.0.2.1"], "www.example.com": ["192.0.2.2"]}')
    reloader = Reloader(FileSource(table), SnapshotHolder.empty(zones))
    result = await reloader.reload()
    assert (result.outcome, result.names, result.rejected) == ("loaded", 1, 1)
