"""DNS behaviour (DESIGN §3), item by item, with real packets to a real server.

Every test runs against both table modes and, where the transport matters, over
UDP and TCP.
"""

from __future__ import annotations

import struct

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest

from tests.helpers import (
    SILENCE_WAIT,
    addresses,
    assert_serving,
    query,
    tcp_exchange,
    udp_exchange,
)

Where = tuple[str, int]
TRANSPORTS = ["udp", "tcp"]


def q(name: str, rdtype: str = "A", **kwargs: object) -> dns.message.Message:
    return dns.message.make_query(name, rdtype, **kwargs)  # type: ignore[arg-type]


def soa_of(response: dns.message.Message) -> dns.rrset.RRset:
    (rrset,) = response.authority
    assert rrset.rdtype == dns.rdatatype.SOA
    return rrset


# -- header bits -----------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("rd", [True, False], ids=["rd", "nord"])
async def test_header_aa_set_ra_never_rd_copied_id_echoed(
    where: Where, transport: str, rd: bool
) -> None:
    query_message = q("www.example.com")
    if not rd:
        query_message.flags &= ~dns.flags.RD
    response = await query(where, query_message, transport)
    assert response.id == query_message.id
    assert response.opcode() == dns.opcode.QUERY
    assert response.flags & dns.flags.QR
    assert response.flags & dns.flags.AA
    assert not response.flags & dns.flags.RA
    assert bool(response.flags & dns.flags.RD) is rd
    assert addresses(response) == ["192.0.2.10"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_question_echoed_byte_for_byte_and_matching_ignores_case(
    where: Where, transport: str
) -> None:
    query_message = q("wWw.ExAmPlE.cOm", "AAAA")
    wire = query_message.to_wire()
    reply = await (udp_exchange if transport == "udp" else tcp_exchange)(where, wire)
    assert reply is not None
    question_end = wire.index(b"\x00", 12) + 5
    assert reply[12:question_end] == wire[12:question_end]
    response = dns.message.from_wire(reply)
    assert addresses(response, "AAAA") == ["2001:db8::10"]
    # The answer's owner name is written as the question's (compressed to it).
    assert response.answer[0].name.to_text() == "wWw.ExAmPlE.cOm."


# -- positive answers --------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_and_aaaa_from_the_table_with_default_and_own_ttl(
    where: Where, transport: str
) -> None:
    www = await query(where, q("www.example.com", "AAAA"), transport)
    assert addresses(www, "AAAA") == ["2001:db8::10"]
    assert www.answer[0].ttl == 300
    api = await query(where, q("api.example.com"), transport)
    assert addresses(api) == ["192.0.2.20", "192.0.2.21"]
    assert api.answer[0].ttl == 60
    net = await query(where, q("www.example.net"), transport)
    assert addresses(net) == ["192.0.2.80"]
    assert net.answer[0].ttl == 120


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_apex_soa_and_a_from_config_and_table(where: Where, transport: str) -> None:
    soa = await query(where, q("example.com", "SOA"), transport)
    assert soa.rcode() == dns.rcode.NOERROR
    (rrset,) = soa.answer
    assert rrset.ttl == 3600
    assert rrset[0].serial == 2024010101
    assert rrset[0].mname == dns.name.from_text("ns1.example.com")
    assert not soa.authority
    apex_a = await query(where, q("example.com", "A"), transport)
    assert addresses(apex_a) == ["192.0.2.1"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_apex_ns_carries_in_zone_glue_only(where: Where, transport: str) -> None:
    response = await query(where, q("example.com", "NS"), transport)
    assert response.flags & dns.flags.AA
    (ns,) = response.answer
    assert sorted(rd.target.to_text() for rd in ns) == [
        "ns.example.net.",
        "ns1.example.com.",
        "ns2.example.com.",
    ]
    glue = sorted(
        (rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), rd.to_text())
        for rrset in response.additional
        for rd in rrset
    )
    assert glue == [
        ("ns1.example.com.", "A", "192.0.2.53"),
        ("ns2.example.com.", "A", "192.0.2.54"),
        ("ns2.example.com.", "AAAA", "2001:db8::54"),
    ]


# -- negative answers --------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("name", "rdtype"),
    [
        ("www.example.com", "MX"),
        ("www.example.com", "TXT"),
        ("www.example.com", "CAA"),
        ("v6only.example.com", "A"),
        ("ns1.example.com", "AAAA"),
        ("example.com", "MX"),
        ("lab.example.com", "A"),  # empty non-terminal
        ("lab.example.com", "AAAA"),
    ],
    ids=lambda v: str(v),
)
async def test_nodata_for_existing_name_with_soa_and_negative_ttl(
    where: Where, transport: str, name: str, rdtype: str
) -> None:
    response = await query(where, q(name, rdtype), transport)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    assert not response.answer
    soa = soa_of(response)
    assert soa.name == dns.name.from_text("example.com")
    assert soa.ttl == 300  # min(SOA TTL 3600, minimum 300)
    assert not response.additional or all(
        r.rdtype == dns.rdatatype.OPT for r in response.additional
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "name", ["missing.example.com", "x.www.example.com", "nope.lab.example.com", "a.example.net"]
)
async def test_nxdomain_with_soa_and_never_ns(where: Where, transport: str, name: str) -> None:
    response = await query(where, q(name), transport)
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert response.flags & dns.flags.AA
    assert not response.answer
    soa = soa_of(response)
    expected_ttl = 60 if name.endswith("example.net") else 300  # min(60, 300) and min(3600, 300)
    assert soa.ttl == expected_ttl


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("name", "rdclass"),
    [
        ("www.example.org", "IN"),
        ("example", "IN"),
        ("com", "IN"),
        ("www.example.com", "CH"),
        ("www.example.com", "HS"),
    ],
)
async def test_refused_outside_zones_and_classes_other_than_in(
    where: Where, transport: str, name: str, rdclass: str
) -> None:
    response = await query(where, q(name, rdclass=rdclass), transport)
    assert response.rcode() == dns.rcode.REFUSED
    assert not response.answer and not response.authority
    assert not response.flags & dns.flags.AA


# -- ANY (RFC 8482) --------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_any_is_minimal_and_never_nxdomain_for_existing_names(
    where: Where, transport: str
) -> None:
    www = await query(where, q("www.example.com", "ANY"), transport)
    assert www.rcode() == dns.rcode.NOERROR
    assert sorted(dns.rdatatype.to_text(r.rdtype) for r in www.answer) == ["A", "AAAA"]
    apex = await query(where, q("example.com", "ANY"), transport)
    assert [dns.rdatatype.to_text(r.rdtype) for r in apex.answer] == ["SOA"]
    ent = await query(where, q("lab.example.com", "ANY"), transport)
    assert ent.rcode() == dns.rcode.NOERROR and not ent.answer
    missing = await query(where, q("missing.example.com", "ANY"), transport)
    assert missing.rcode() == dns.rcode.NXDOMAIN


# -- wire policy --------------------------------------------------------------------


def header(qid: int, flags: int, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


QUESTION = b"\x03www\x07example\x03com\x00\x00\x01\x00\x01"


def reply_header(reply: bytes) -> tuple[int, int, int, int, int, int]:
    return struct.unpack_from("!HHHHHH", reply)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "opcode", [dns.opcode.NOTIFY, dns.opcode.UPDATE, dns.opcode.STATUS, dns.opcode.IQUERY, 15]
)
@pytest.mark.parametrize("qdcount", [1, 0, 2], ids=["qd1", "qd0", "qd2"])
async def test_opcodes_other_than_query_get_notimp_before_question_count(
    where: Where, transport: str, opcode: int, qdcount: int
) -> None:
    wire = header(0x1234, (opcode << 11) | dns.flags.RD, qd=qdcount) + QUESTION * qdcount
    reply = await (udp_exchange if transport == "udp" else tcp_exchange)(where, wire)
    assert reply is not None
    qid, flags, *_ = reply_header(reply)
    assert qid == 0x1234
    assert flags & dns.flags.QR
    assert (flags >> 11) & 0xF == opcode
    assert flags & 0xF == dns.rcode.NOTIMP
    await assert_serving(where)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("qdcount", [0, 2])
@pytest.mark.parametrize("edns", [False, True], ids=["plain", "edns"])
async def test_qdcount_other_than_one_is_formerr(
    where: Where, transport: str, qdcount: int, edns: bool
) -> None:
    message = q("www.example.com", use_edns=0 if edns else False)
    message.question = message.question * qdcount
    wire = message.to_wire()
    reply = await (udp_exchange if transport == "udp" else tcp_exchange)(where, wire)
    assert reply is not None
    response = dns.message.from_wire(reply)
    assert response.id == message.id
    assert response.rcode() == dns.rcode.FORMERR
    assert (response.edns == 0) is edns
    await assert_serving(where)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_responses_are_never_answered(where: Where, transport: str) -> None:
    wire = header(7, dns.flags.QR) + QUESTION
    if transport == "udp":
        assert await udp_exchange(where, wire, wait=SILENCE_WAIT) is None
    else:
        # Over TCP the dropped message gets no reply; the next query on the same
        # connection is answered, and only that one.
        import trio

        from tests.helpers import frame, read_frame

        stream = await trio.open_tcp_stream(*where)
        async with stream:
            follow = q("www.example.com")
            await stream.send_all(frame(wire) + frame(follow.to_wire()))
            with trio.fail_after(5):
                data = await read_frame(stream, bytearray())
            assert data is not None
            assert dns.message.from_wire(data).id == follow.id
    await assert_serving(where)


@pytest.mark.parametrize("size", [0, 1, 5, 11])
async def test_datagrams_shorter_than_a_header_are_dropped(where: Where, size: int) -> None:
    assert await udp_exchange(where, b"\xab" * size, wait=SILENCE_WAIT) is None
    await assert_serving(where)


MALFORMED = {
    "compression-loop": header(0x4242, 0) + b"\xc0\x0c\x00\x01\x00\x01",
    "pointer-forward": header(0x4242, 0) + b"\xc0\x20\x00\x01\x00\x01",
    "bad-label-type": header(0x4242, 0) + b"\x43abc\x00\x00\x01\x00\x01",
    "overlong-name": header(0x4242, 0) + (b"\x3f" + b"a" * 63) * 5 + b"\x00\x00\x01\x00\x01",
    "truncated-question": header(0x4242, 0) + b"\x03www\x07exa",
    "missing-qtype": header(0x4242, 0) + b"\x03www\x00",
    "trailing-bytes": header(0x4242, 0) + QUESTION + b"\x00\x00junk",
    "counts-lie": header(0x4242, 0, an=3) + QUESTION,
    "label-past-end": header(0x4242, 0) + b"\x3fabc",
}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("name", sorted(MALFORMED))
async def test_malformed_messages_get_formerr_with_id_and_server_keeps_serving(
    where: Where, transport: str, name: str
) -> None:
    reply = await (udp_exchange if transport == "udp" else tcp_exchange)(where, MALFORMED[name])
    assert reply is not None
    qid, flags, _qd, an, ns, _ar = reply_header(reply)
    assert qid == 0x4242
    assert flags & dns.flags.QR
    assert flags & 0xF == dns.rcode.FORMERR
    assert (an, ns) == (0, 0)
    await assert_serving(where)


# -- EDNS(0) --------------------------------------------------------------------------


def opt_count(reply: bytes) -> int:
    response = dns.message.from_wire(reply)
    return 1 if response.opt is not None else 0


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "wire_query",
    [
        pytest.param(lambda e: q("www.example.com", use_edns=e), id="noerror"),
        pytest.param(lambda e: q("missing.example.com", use_edns=e), id="nxdomain"),
        pytest.param(lambda e: q("www.example.com", "MX", use_edns=e), id="nodata"),
        pytest.param(lambda e: q("www.example.org", use_edns=e), id="refused"),
        pytest.param(lambda e: _with_opcode(q("example.com", use_edns=e), 4), id="notimp"),
        pytest.param(lambda e: _twice(q("example.com", use_edns=e)), id="formerr"),
        pytest.param(lambda e: q("big.example.com", "AAAA", use_edns=e), id="truncated"),
    ],
)
@pytest.mark.parametrize("edns", [False, True], ids=["plain", "edns"])
async def test_response_has_one_opt_iff_query_had_one(
    where: Where, transport: str, wire_query: object, edns: bool
) -> None:
    message = wire_query(0 if edns else False)  # type: ignore[operator]
    wire = message.to_wire()
    reply = await (udp_exchange if transport == "udp" else tcp_exchange)(where, wire)
    assert reply is not None
    assert reply_header(reply)[5] == (1 if edns else 0)  # ARCOUNT: only the OPT
    assert opt_count(reply) == (1 if edns else 0)


def _with_opcode(message: dns.message.Message, opcode: int) -> dns.message.Message:
    message.set_opcode(dns.opcode.Opcode(opcode))
    return message


def _twice(message: dns.message.Message) -> dns.message.Message:
    message.question = message.question * 2
    return message


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_unknown_edns_options_are_ignored_not_echoed(where: Where, transport: str) -> None:
    option = dns.edns.GenericOption(dns.edns.OptionType.make(65001), b"\x01\x02\x03")
    message = q("www.example.com", use_edns=0, options=[option])
    response = await query(where, message, transport)
    assert response.rcode() == dns.rcode.NOERROR
    assert addresses(response) == ["192.0.2.10"]
    assert response.edns == 0
    assert response.options == ()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_edns_version_above_zero_gets_badvers_with_question(
    where: Where, transport: str
) -> None:
    message = q("www.example.com", use_edns=1)
    response = await query(where, message, transport)
    assert response.rcode() == dns.rcode.BADVERS
    assert response.edns == 0
    assert response.question == message.question
    assert not response.answer
    await assert_serving(where)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_do_bit_is_copied(where: Where, transport: str) -> None:
    response = await query(where, q("www.example.com", want_dnssec=True), transport)
    assert response.ednsflags & dns.flags.DO
    response = await query(where, q("www.example.com", use_edns=0), transport)
    assert not response.ednsflags & dns.flags.DO


# -- sizes and truncation --------------------------------------------------------------

# mid.example.com: 40 A records, ~700 bytes.  big.example.com: 100 AAAA, ~2,900 bytes.


@pytest.mark.parametrize(
    ("edns", "payload", "truncated"),
    [
        (False, 0, True),  # 512 without EDNS
        (True, 512, True),
        (True, 100, True),  # advertised below 512 counts as 512
        (True, 1232, False),
        (True, 4096, False),  # capped at our 1232, still fits
    ],
)
async def test_udp_limit_is_512_without_edns_and_advertised_with_it(
    where: Where, edns: bool, payload: int, truncated: bool
) -> None:
    message = q("mid.example.com", use_edns=0 if edns else False, payload=payload or None)
    reply = await udp_exchange(where, message.to_wire())
    assert reply is not None
    response = dns.message.from_wire(reply)
    assert bool(response.flags & dns.flags.TC) is truncated
    if truncated:
        assert not response.answer and not response.authority
        assert response.question == message.question
        assert len(reply) <= 512
    else:
        assert len(addresses(response)) == 40


async def test_udp_answer_never_exceeds_our_limit(where: Where) -> None:
    message = q("big.example.com", "AAAA", use_edns=0, payload=65000)
    reply = await udp_exchange(where, message.to_wire())
    assert reply is not None
    assert len(reply) <= 1232
    response = dns.message.from_wire(reply)
    assert response.flags & dns.flags.TC
    assert not response.answer
    assert response.edns == 0


@pytest.mark.parametrize("edns", [False, True], ids=["plain", "edns"])
async def test_truncated_over_udp_is_complete_over_tcp(where: Where, edns: bool) -> None:
    message = q("big.example.com", "AAAA", use_edns=0 if edns else False)
    response = await query(where, message, "tcp")
    assert not response.flags & dns.flags.TC
    assert len(addresses(response, "AAAA")) == 100


QUERY_WITH = {
    "answer-record": header(0x4343, 0x0100, an=1)
    + QUESTION
    + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x00\x00\x04\x01\x02\x03\x04",
    "authority-record": header(0x4343, 0x0100, ns=1)
    + QUESTION
    + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x00\x00\x04\x01\x02\x03\x04",
    "additional-record": header(0x4343, 0x0100, ar=1)
    + QUESTION
    + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x00\x00\x04\x01\x02\x03\x04",
    "rcode-in-query": header(0x4343, 0x0105) + QUESTION,
}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("name", sorted(QUERY_WITH))
async def test_queries_carrying_records_or_an_rcode_get_formerr(
    where: Where, transport: str, name: str
) -> None:
    reply = await (udp_exchange if transport == "udp" else tcp_exchange)(where, QUERY_WITH[name])
    assert reply is not None
    response = dns.message.from_wire(reply)
    assert response.id == 0x4343
    assert response.rcode() == dns.rcode.FORMERR
    assert not response.answer
    await assert_serving(where)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("rdtype", ["AXFR", "IXFR"])
async def test_zone_transfers_are_refused(where: Where, transport: str, rdtype: str) -> None:
    response = await query(where, q("example.com", rdtype), transport)
    assert response.rcode() == dns.rcode.REFUSED
    assert not response.answer and not response.authority


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_malformed_known_option_is_formerr_even_after_the_question_is_cached(
    where: Where, transport: str
) -> None:
    exchange = udp_exchange if transport == "udp" else tcp_exchange
    # api.example.com A with a 3-byte COOKIE (a client cookie is 8 bytes).
    bad = bytes.fromhex(
        "11110100000100000000000103617069076578616d706c6503636f6d0000010001"
        "00002904d0000000000007000a0003616263"
    )
    first = await exchange(where, bad)
    plain = await exchange(where, q("api.example.com", use_edns=0, payload=1232).to_wire())
    again = await exchange(where, bad)
    assert first is not None and plain is not None and again is not None
    assert dns.message.from_wire(plain).rcode() == dns.rcode.NOERROR
    assert first == again
    assert again[3] & 0xF == dns.rcode.FORMERR
