"""Parsing and validating table entries; the builder's empty non-terminal counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from cowdns.config import parse_config
from cowdns.errors import EntryError
from cowdns.store.table import MAX_TTL, Entry, TableBuilder, build_table, parse_entry

ZONES = parse_config(
    {"zone": [{"origin": "example.com"}, {"origin": "example.net"}]}, Path("/")
).zones

# A zone inside another one: its apex is never an empty non-terminal of the parent.
NESTED = parse_config(
    {"zone": [{"origin": "example.com"}, {"origin": "lab.example.com"}]}, Path("/")
).zones

V4 = ["192.0.2.1"]


# -- accepted entries -------------------------------------------------------------

ACCEPTED = [
    pytest.param(
        "www.example.com", ["192.0.2.1"], "www.example.com.", Entry(("192.0.2.1",), ()), id="list"
    ),
    pytest.param(
        "www.example.com",
        {"ips": ["192.0.2.1"], "ttl": 60},
        "www.example.com.",
        Entry(("192.0.2.1",), (), 60),
        id="ips-and-ttl",
    ),
    pytest.param(
        "www.example.com",
        {"ips": ["192.0.2.1"]},
        "www.example.com.",
        Entry(("192.0.2.1",), ()),
        id="ips-without-ttl",
    ),
    pytest.param(
        "www.example.com",
        {"ips": ["192.0.2.1"], "ttl": 0},
        "www.example.com.",
        Entry(("192.0.2.1",), (), 0),
        id="ttl-zero",
    ),
    pytest.param(
        "www.example.com",
        {"ips": ["192.0.2.1"], "ttl": MAX_TTL},
        "www.example.com.",
        Entry(("192.0.2.1",), (), MAX_TTL),
        id="ttl-max",
    ),
    pytest.param(
        "www.example.com",
        ["2001:db8::1", "192.0.2.1", "192.0.2.2", "2001:db8::2"],
        "www.example.com.",
        Entry(("192.0.2.1", "192.0.2.2"), ("2001:db8::1", "2001:db8::2")),
        id="mixed-v4-v6-keep-order",
    ),
    pytest.param(
        "www.example.com",
        ["2001:DB8:0::1"],
        "www.example.com.",
        Entry((), ("2001:db8::1",)),
        id="v6-canonical",
    ),
    pytest.param(
        "www.example.com",
        ["2001:0db8:0000:0000:0000:0000:0000:0001"],
        "www.example.com.",
        Entry((), ("2001:db8::1",)),
        id="v6-expanded-canonical",
    ),
    pytest.param(
        "www.example.com",
        ["192.0.2.1", "192.0.2.1", "2001:db8::1", "2001:DB8::1"],
        "www.example.com.",
        Entry(("192.0.2.1",), ("2001:db8::1",)),
        id="dedup-after-canonical",
    ),
    pytest.param(
        "www.example.com",
        [" 192.0.2.1 "],
        "www.example.com.",
        Entry(("192.0.2.1",), ()),
        id="address-whitespace",
    ),
    pytest.param(
        "WWW.Example.COM", V4, "www.example.com.", Entry(("192.0.2.1",), ()), id="lower-case"
    ),
    pytest.param(
        "www.example.com.", V4, "www.example.com.", Entry(("192.0.2.1",), ()), id="trailing-dot"
    ),
    pytest.param("example.com", V4, "example.com.", Entry(("192.0.2.1",), ()), id="apex"),
    pytest.param(
        "www.example.net", V4, "www.example.net.", Entry(("192.0.2.1",), ()), id="second-zone"
    ),
    pytest.param(
        "_dmarc.example.com", V4, "_dmarc.example.com.", Entry(("192.0.2.1",), ()), id="underscore"
    ),
    pytest.param(
        "bücher.example.com",
        V4,
        "xn--bcher-kva.example.com.",
        Entry(("192.0.2.1",), ()),
        id="unicode-to-a-label",
    ),
    pytest.param(
        "BÜCHER.Example.com",
        V4,
        "xn--bcher-kva.example.com.",
        Entry(("192.0.2.1",), ()),
        id="unicode-upper-case",
    ),
    pytest.param(
        "xn--bcher-kva.example.com",
        V4,
        "xn--bcher-kva.example.com.",
        Entry(("192.0.2.1",), ()),
        id="a-label-as-is",
    ),
    pytest.param(
        ("a" * 63 + ".") * 3 + "b" * 49 + ".example.com",
        V4,
        ("a" * 63 + ".") * 3 + "b" * 49 + ".example.com.",
        Entry(("192.0.2.1",), ()),
        id="name-255-octets",
    ),
]


@pytest.mark.parametrize(("key", "value", "canonical", "entry"), ACCEPTED)
def test_parse_entry_accepts(key: str, value: object, canonical: str, entry: Entry) -> None:
    assert parse_entry(key, value, ZONES) == (canonical, entry)


# -- rejected entries -------------------------------------------------------------

REJECTED = [
    pytest.param("www.example.com", ["192.0.2.300"], "192.0.2.300", id="bad-v4"),
    pytest.param("www.example.com", ["192.0.2.01"], "192.0.2.01", id="v4-leading-zero"),
    pytest.param("www.example.com", ["2001:db8::g"], "2001:db8::g", id="bad-v6"),
    pytest.param("www.example.com", ["192.0.2.1", "nope"], "nope", id="one-bad-of-two"),
    pytest.param("www.example.com", [""], "''", id="empty-address"),
    pytest.param("www.example.com", [], "no addresses", id="empty-list"),
    pytest.param("www.example.com", {"ips": []}, "no addresses", id="empty-ips"),
    pytest.param("www.example.com", "192.0.2.1", "must be a list", id="string-not-list"),
    pytest.param("www.example.com", {"ips": "192.0.2.1"}, "must be a list", id="ips-string"),
    pytest.param("www.example.com", 42, "must be a list", id="number"),
    pytest.param("www.example.com", None, "must be a list", id="null"),
    pytest.param("www.example.com", [1921682], "not a string", id="address-number"),
    pytest.param("www.example.com", [None], "not a string", id="address-null"),
    pytest.param("www.example.com", [["192.0.2.1"]], "not a string", id="address-nested"),
    pytest.param("www.example.com", {"ips": V4, "ttl": True}, "not an integer", id="ttl-bool"),
    pytest.param("www.example.com", {"ips": V4, "ttl": "60"}, "not an integer", id="ttl-str"),
    pytest.param("www.example.com", {"ips": V4, "ttl": 6.5}, "not an integer", id="ttl-float"),
    pytest.param("www.example.com", {"ips": V4, "ttl": -1}, "out of range", id="ttl-negative"),
    pytest.param(
        "www.example.com", {"ips": V4, "ttl": MAX_TTL + 1}, "out of range", id="ttl-too-big"
    ),
    pytest.param(
        "www.example.com", {"ips": V4, "tll": 60}, "unknown field(s) tll", id="unknown-field"
    ),
    pytest.param("www.example.com", {"ttl": 60}, 'missing "ips"', id="missing-ips"),
    pytest.param("www.example.com", {}, 'missing "ips"', id="empty-object"),
    pytest.param("a" * 64 + ".example.com", V4, "not a valid DNS name", id="label-64"),
    pytest.param(
        ("a" * 63 + ".") * 3 + "b" * 50 + ".example.com",
        V4,
        "not a valid DNS name",
        id="name-256-octets",
    ),
    pytest.param("a..example.com", V4, "not a valid DNS name", id="empty-label"),
    pytest.param("", V4, "empty name", id="empty-name"),
    pytest.param(".", V4, "root", id="root"),
    pytest.param("www.example.org", V4, "outside every configured zone", id="outside-zones"),
    pytest.param("com", V4, "outside every configured zone", id="parent-of-zone"),
    pytest.param("notexample.com", V4, "outside every configured zone", id="suffix-not-label"),
    pytest.param("bücher.example.org", V4, "outside every configured zone", id="unicode-outside"),
]


@pytest.mark.parametrize(("key", "value", "mentions"), REJECTED)
def test_parse_entry_rejects_naming_the_key(key: str, value: object, mentions: str) -> None:
    with pytest.raises(EntryError) as caught:
        parse_entry(key, value, ZONES)
    assert caught.value.key == key
    assert mentions in caught.value.message
    assert repr(key) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_parse_entry_rejects_an_ipv6_zone_index() -> None:
    # Accepted today as "fe80::1%eth0"; every AAAA answer for the name then fails to build.
    with pytest.raises(EntryError) as caught:
        parse_entry("www.example.com", ["fe80::1%eth0"], ZONES)
    assert caught.value.key == "www.example.com"


def test_parse_entry_rejects_a_non_string_key() -> None:
    with pytest.raises(EntryError) as caught:
        parse_entry(42, V4, ZONES)  # type: ignore[arg-type]
    assert caught.value.key == "42"
    assert "string" in caught.value.message


# -- the builder: entries and empty non-terminals ---------------------------------


def test_put_counts_every_name_between_the_apex_and_the_entry() -> None:
    builder = TableBuilder(ZONES)
    assert builder.put("a.b.c.example.com", V4) == "a.b.c.example.com."
    assert builder.ancestors == {"b.c.example.com.": 1, "c.example.com.": 1}
    assert "example.com." not in builder.ancestors  # the apex is never an ancestor entry

    assert builder.put("x.c.example.com", V4) == "x.c.example.com."
    assert builder.ancestors == {"b.c.example.com.": 1, "c.example.com.": 2}


def test_delete_removes_empty_non_terminals_that_lose_their_last_child() -> None:
    builder = TableBuilder(ZONES)
    builder.put("a.b.c.example.com", V4)
    builder.put("x.c.example.com", V4)

    assert builder.delete("A.B.C.example.com.")  # any spelling of the name
    assert builder.ancestors == {"c.example.com.": 1}
    assert builder.delete("x.c.example.com")
    assert builder.ancestors == {}
    assert builder.entries == {}


def test_replacing_an_entry_does_not_count_its_ancestors_twice() -> None:
    builder = TableBuilder(ZONES)
    builder.put("a.b.example.com", V4)
    builder.put("A.b.example.com", ["192.0.2.2"])
    assert builder.ancestors == {"b.example.com.": 1}
    assert builder.entries == {"a.b.example.com.": Entry(("192.0.2.2",), ())}
    assert builder.delete("a.b.example.com")
    assert builder.ancestors == {}


def test_an_entry_under_an_entry_keeps_both() -> None:
    builder = TableBuilder(ZONES)
    builder.put("b.example.com", V4)
    builder.put("a.b.example.com", V4)
    assert builder.ancestors == {"b.example.com.": 1}
    assert builder.delete("b.example.com")
    # b.example.com. now has no data of its own but still has a name below it.
    assert builder.ancestors == {"b.example.com.": 1}
    assert set(builder.entries) == {"a.b.example.com."}


def test_apex_and_direct_children_have_no_ancestors() -> None:
    builder = TableBuilder(ZONES)
    builder.put("example.com", V4)
    builder.put("www.example.com", V4)
    builder.put("www.example.net", V4)
    assert builder.ancestors == {}


def test_ancestors_stop_at_the_enclosing_zone_apex() -> None:
    builder = TableBuilder(NESTED)
    builder.put("a.b.lab.example.com", V4)
    assert builder.ancestors == {"b.lab.example.com.": 1}


def test_delete_of_a_missing_or_invalid_name_changes_nothing() -> None:
    builder = TableBuilder(ZONES)
    builder.put("a.b.example.com", V4)
    before = (dict(builder.entries), dict(builder.ancestors))
    assert not builder.delete("missing.b.example.com")
    assert not builder.delete("b.example.com")  # an empty non-terminal, not an entry
    assert not builder.delete("www.example.org")
    assert not builder.delete("a..example.com")
    assert (builder.entries, builder.ancestors) == before


def test_rejected_put_is_recorded_and_changes_nothing() -> None:
    builder = TableBuilder(ZONES)
    assert builder.put("a.b.example.com", ["192.0.2.300"]) is None
    assert builder.entries == {} and builder.ancestors == {}
    assert [error.key for error in builder.rejected] == ["a.b.example.com"]


def test_from_table_copies_so_updates_never_touch_the_original() -> None:
    original = TableBuilder(ZONES)
    original.put("a.b.example.com", V4)
    entries, ancestors = dict(original.entries), dict(original.ancestors)
    copy = TableBuilder.from_table(ZONES, original.entries, original.ancestors)
    copy.put("c.b.example.com", V4)
    copy.delete("a.b.example.com")
    assert (original.entries, original.ancestors) == (entries, ancestors)
    assert copy.ancestors == {"b.example.com.": 1}


# -- build_table ------------------------------------------------------------------


async def test_build_table_reports_names_given_twice() -> None:
    async def checkpoint() -> None:
        pass

    raw: dict[str, object] = {
        "WWW.example.com": ["192.0.2.1"],
        "api.example.com": ["192.0.2.5"],
        "www.example.com.": ["192.0.2.2"],
    }
    builder = await build_table(ZONES, raw, checkpoint)
    assert builder.entries == {
        "www.example.com.": Entry(("192.0.2.2",), ()),
        "api.example.com.": Entry(("192.0.2.5",), ()),
    }
    [duplicate] = builder.rejected
    assert duplicate.key == "www.example.com."
    assert "'WWW.example.com'" in duplicate.message


async def test_build_table_skips_bad_keys_and_loads_the_rest() -> None:
    async def checkpoint() -> None:
        pass

    raw: dict[str, object] = {
        "www.example.com": ["192.0.2.1"],
        "bad-address.example.com": ["192.0.2.300"],
        "www.example.org": ["192.0.2.99"],
        "deep.sub.example.net": ["2001:db8::1"],
    }
    builder = await build_table(ZONES, raw, checkpoint)
    assert set(builder.entries) == {"www.example.com.", "deep.sub.example.net."}
    assert builder.ancestors == {"sub.example.net.": 1}
    assert sorted(error.key for error in builder.rejected) == [
        "bad-address.example.com",
        "www.example.org",
    ]


@pytest.mark.parametrize(
    ("size", "chunk", "calls"),
    [
        pytest.param(0, 3, 0, id="empty"),
        pytest.param(2, 3, 0, id="less-than-a-chunk"),
        pytest.param(3, 3, 1, id="one-chunk"),
        pytest.param(10, 3, 3, id="three-chunks-and-a-bit"),
        pytest.param(4000, 1000, 4, id="large"),
    ],
)
async def test_build_table_yields_every_chunk(size: int, chunk: int, calls: int) -> None:
    calls_made = 0

    async def checkpoint() -> None:
        nonlocal calls_made
        calls_made += 1

    raw = {f"h{i}.example.com": [f"192.0.2.{i % 250 + 1}"] for i in range(size)}
    builder = await build_table(ZONES, raw, checkpoint, chunk=chunk)
    assert calls_made == calls
    assert len(builder.entries) == size


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        pytest.param("*.example.com", ["192.0.2.1"], "wildcard", id="wildcard"),
        pytest.param("a.*.example.com", ["192.0.2.1"], "wildcard", id="inner-wildcard"),
        pytest.param("big.example.com", ["192.0.2.1"] * 2001, "at most 2000", id="too-many"),
        pytest.param("nul.example.com", ["192.0.2.1\x00"], "not an IPv4", id="nul-address"),
        pytest.param("sur.example.com", ["\ud800"], "not an IPv4", id="surrogate-address"),
    ],
)
def test_entries_that_cannot_be_served_are_rejected(key: str, value: object, words: str) -> None:
    with pytest.raises(EntryError) as caught:
        parse_entry(key, value, ZONES)
    assert caught.value.key == key
    assert words in caught.value.message
