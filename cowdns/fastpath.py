"""The bytes-level fast path: answer a repeated question by splicing cached bytes.

Design: a reply depends on the query only through its ID, its question's
letter case, and the things in the cache key — the lower-cased question,
type, class, EDNS presence, effective payload limit, DO, RD and CD bits, and
the transport.  So the normal path's reply to one query, with the ID and the
question bytes replaced, *is* the normal path's reply to any query with the
same key.  Owner names in cached answers are compression pointers into the
question (offset 12 and its suffixes), so they follow the new question's case
exactly as a fresh rendering would.  ``tests/test_fastpath.py`` checks byte
equality against the normal path over a broad corpus.

Only plain queries take this path: QR=0, opcode QUERY, RCODE 0, one question
with no compression, no answer or authority records, at most one well-formed
OPT of version 0 whose options the normal path would accept too (options that
dnspython parses, such as client subnet, take the normal path unless they are
cookies of a valid length), and nothing after it.  Everything else (and every
miss) takes the normal path, which owns every error rule.

Rejected: caching parsed dnspython messages (rendering is the expensive part),
and keying on the raw question bytes (the case would fragment the cache).
"""

from __future__ import annotations

import struct
from typing import Final

import dns.edns

from cowdns.filters.base import Transport
from cowdns.wire import size_limit

__all__ = ["CacheKey", "cache_key", "splice"]

CacheKey = tuple[bytes, int, int, bool, int, bool, int, str]

_HEADER: Final = struct.Struct("!HHHHHH")
_QTAIL: Final = struct.Struct("!HH")
_OPT: Final = struct.Struct("!HHBBHH")
_OPTION: Final = struct.Struct("!HH")
_QR_OPCODE_RCODE: Final = 0xF80F
_COOKIE: Final = 10
# Options whose contents the normal path validates (and may answer FORMERR for);
# a cookie is checked here, the rest always take the normal path.
_VALIDATED: Final = frozenset(
    int(code)
    for code in dns.edns.OptionType
    if dns.edns.get_option_class(code)
    not in (dns.edns.GenericOption, dns.edns.NSIDOption, dns.edns.CookieOption)
)
_RD_CD: Final = 0x0100 | 0x0010
_DO: Final = 0x8000
_TYPE_OPT: Final = 41


def cache_key(data: bytes, transport: Transport, max_payload: int) -> CacheKey | None:
    """The cache key of a plain query, or None when it must take the normal path."""
    end = len(data)
    if end < 17:
        return None
    _qid, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    if flags & _QR_OPCODE_RCODE or qdcount != 1 or ancount or nscount or arcount > 1:
        return None
    pos = 12
    while True:
        if pos >= end:
            return None
        length = data[pos]
        if length == 0:
            pos += 1
            break
        if length > 63:
            return None  # compression pointer or reserved label type
        pos += 1 + length
    if pos - 12 > 255 or pos + 4 > end:
        return None
    name = data[12:pos].lower()
    qtype, qclass = _QTAIL.unpack_from(data, pos)
    pos += 4
    edns = False
    do = False
    advertised: int | None = None
    if arcount:
        if pos + 11 > end or data[pos] != 0:
            return None
        rtype, offered, _ext, version, eflags, rdlen = _OPT.unpack_from(data, pos + 1)
        pos += 11
        if rtype != _TYPE_OPT or version != 0 or pos + rdlen != end:
            return None
        options_end = end
        while pos < options_end:
            if pos + 4 > options_end:
                return None
            code, olen = _OPTION.unpack_from(data, pos)
            if code in _VALIDATED or (code == _COOKIE and not (olen == 8 or 16 <= olen <= 40)):
                return None
            pos += 4 + olen
        if pos != options_end:
            return None
        edns = True
        do = bool(eflags & _DO)
        advertised = offered
    elif pos != end:
        return None
    payload = size_limit(transport, advertised, max_payload)
    return (name, qtype, qclass, edns, payload, do, flags & _RD_CD, transport)


def splice(query: bytes, question_end: int, cached: bytes) -> bytes:
    """The cached reply with the query's ID and question bytes (letter case) put in."""
    return query[:2] + cached[2:12] + query[12:question_end] + cached[question_end:]
