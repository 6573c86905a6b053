"""ANY gets a minimal answer (RFC 8482): the name's own RRsets, never everything."""

from __future__ import annotations

import dns.rcode
import dns.rdatatype
import dns.rrset

from cowdns.filters.base import Answer, Request
from cowdns.filters.records import AAAA, A, address_rrset, soa_rrset
from cowdns.store.snapshot import TableView
from cowdns.store.zones import Zone

__all__ = ["AnyFilter"]


class AnyFilter:
    """At the apex: the SOA alone.  At a table name: its A and AAAA RRsets.

    Names that exist without data (empty non-terminals) and missing names fall
    through to the negative filter, so ANY is never NXDOMAIN for an existing name.
    """

    name = "any"

    def handle(self, request: Request, zone: Zone | None, view: TableView) -> Answer | None:
        if request.qtype != dns.rdatatype.ANY:
            return None
        assert zone is not None
        if request.key == zone.key:
            return Answer(dns.rcode.NOERROR, (soa_rrset(zone, request.qname),), by=self.name)
        entry = view.lookup(request.key)
        if entry is None:
            return None
        rrsets: list[dns.rrset.RRset] = []
        for rdtype in (A, AAAA):
            rrset = address_rrset(request.qname, entry, rdtype, zone)
            if rrset is not None:
                rrsets.append(rrset)
        return Answer(dns.rcode.NOERROR, tuple(rrsets), by=self.name)
