"""Authoritative A/AAAA answers from the IP table."""

from __future__ import annotations

import dns.rcode
import dns.rdatatype

from cowdns.filters.base import Answer, Request
from cowdns.filters.records import AAAA, A, address_rrset
from cowdns.store.snapshot import TableView
from cowdns.store.zones import Zone

__all__ = ["AddressFilter"]


class AddressFilter:
    name = "address"

    def handle(self, request: Request, zone: Zone | None, view: TableView) -> Answer | None:
        if request.qtype not in (A, AAAA):
            return None
        assert zone is not None
        entry = view.lookup(request.key)
        if entry is None:
            return None
        rrset = address_rrset(request.qname, entry, dns.rdatatype.RdataType(request.qtype), zone)
        if rrset is None:
            return None
        return Answer(dns.rcode.NOERROR, (rrset,), by=self.name)
