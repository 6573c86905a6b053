"""Wire policy: decide what to do with raw bytes before any lookup, and render answers.

Order of checks (each one is a test in tests/test_dns_behaviour.py):

1. fewer than 12 bytes → dropped silently (no header, no ID to echo);
2. QR=1 → dropped (we never answer responses: no reflection loops);
3. opcode other than QUERY → NOTIMP (before the question count);
4. unparseable message (bad pointers, bad label types, overlong names, trailing
   bytes after the last record, duplicate OPT, …) → FORMERR, header only, ID
   echoed;
5. QDCOUNT ≠ 1 → FORMERR;
6. a query that carries records (answer, authority, additional other than its
   OPT) or a non-zero RCODE → FORMERR, question echoed (as NSD does);
7. EDNS version ≠ 0 → BADVERS, question echoed.

Trailing bytes after the message are a FORMERR: a query that does not end where
its counts say it ends is malformed, and answering it would hide the bug.
"""

from __future__ import annotations

import struct

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from cowdns.filters.base import Answer, Request, Transport
from cowdns.store.zones import name_key

__all__ = ["HEADER", "decode", "encode", "render", "size_limit"]

HEADER = struct.Struct("!HHHHHH")
_QR = dns.flags.QR
_COPIED = dns.flags.RD | dns.flags.CD
TCP_LIMIT = 65535
UDP_MINIMUM = 512


def size_limit(transport: Transport, advertised: int | None, max_payload: int) -> int:
    """How many bytes an answer may take: 64 KB over TCP; over UDP 512 without EDNS,
    else the advertised size, at least 512 and at most our own ``max_payload``."""
    if transport == "tcp":
        return TCP_LIMIT
    if advertised is None:
        return UDP_MINIMUM
    return max(UDP_MINIMUM, min(advertised, max_payload))


def _header_only(data: bytes, rcode: dns.rcode.Rcode) -> bytes:
    """A reply with no sections at all, for messages we could not parse."""
    qid, flags = struct.unpack_from("!HH", data)
    opcode_bits = flags & 0x7800
    reply_flags = _QR | opcode_bits | (flags & _COPIED) | int(rcode)
    return HEADER.pack(qid, reply_flags, 0, 0, 0, 0)


def decode(
    data: bytes, transport: Transport, max_payload: int
) -> Request | dns.message.Message | bytes | None:
    """Apply the wire policy to one received message.

    Returns a :class:`Request` to resolve, an error response (a Message to
    render, or ready bytes), or None to drop the packet.
    """
    if len(data) < 12:
        return None
    flags = struct.unpack_from("!H", data, 2)[0]
    if flags & _QR:
        return None
    try:
        message: dns.message.Message | None = dns.message.from_wire(data)
    except Exception:
        # Any parse failure of hostile input must turn into FORMERR, never a crash,
        # whatever exception type the parser chose for it.
        message = None
    opcode = (flags >> 11) & 0xF
    if opcode != dns.opcode.QUERY:
        if message is None:
            return _header_only(data, dns.rcode.NOTIMP)
        return error_response(message, dns.rcode.NOTIMP, max_payload, question=True)
    if message is None:
        return _header_only(data, dns.rcode.FORMERR)
    if len(message.question) != 1:
        return error_response(message, dns.rcode.FORMERR, max_payload, question=False)
    ixfr = message.question[0].rdtype == dns.rdatatype.IXFR  # carries an SOA in authority
    if message.answer or (message.authority and not ixfr) or message.additional or flags & 0xF:
        return error_response(message, dns.rcode.FORMERR, max_payload, question=True)
    if message.edns > 0:
        return error_response(message, dns.rcode.BADVERS, max_payload, question=True)
    rrset = message.question[0]
    payload = size_limit(transport, message.payload if message.edns == 0 else None, max_payload)
    return Request(
        message, rrset.name, rrset.rdtype, rrset.rdclass, name_key(rrset.name), transport, payload
    )


def _response(query: dns.message.Message, max_payload: int) -> dns.message.Message:
    response = dns.message.make_response(query, our_payload=max_payload, pad=0)
    response.flags |= query.flags & dns.flags.CD
    if query.edns >= 0 and query.ednsflags & dns.flags.DO:
        response.ednsflags |= dns.flags.DO
    return response


def error_response(
    query: dns.message.Message, rcode: dns.rcode.Rcode, max_payload: int, *, question: bool
) -> dns.message.Message:
    response = _response(query, max_payload)
    if not question:
        response.question = []
    if query.edns > 0:
        # make_response mirrors the query's EDNS; we speak version 0 only.
        response.use_edns(0, response.ednsflags, max_payload)
    response.set_rcode(rcode)
    return response


def render(request: Request, answer: Answer, max_payload: int) -> dns.message.Message:
    """The response message for ``answer``."""
    response = _response(request.message, max_payload)
    if answer.authoritative:
        response.flags |= dns.flags.AA
    response.set_rcode(answer.rcode)
    response.answer = list(answer.answer)
    response.authority = list(answer.authority)
    response.additional = list(answer.additional)
    return response


def encode(response: dns.message.Message, limit: int) -> bytes:
    """Render within ``limit`` bytes; what does not fit becomes TC=1 with header + question.

    Records keep the table's order (no shuffling), like NSD and Knot: the same
    question always gets the same bytes, which is what lets replies be cached.
    """
    try:
        return response.to_wire(max_size=limit, want_shuffle=False)
    except dns.exception.TooBig:
        pass
    response.answer = []
    response.authority = []
    response.additional = []
    response.flags |= dns.flags.TC
    return response.to_wire(max_size=limit, want_shuffle=False)
