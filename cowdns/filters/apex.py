"""SOA and NS at a zone apex come from the config; NS answers carry in-zone glue."""

from __future__ import annotations

import dns.rcode
import dns.rdatatype
import dns.rrset

from cowdns.filters.base import Answer, Request
from cowdns.filters.records import AAAA, A, address_rrset, ns_rrset, soa_rrset
from cowdns.store.snapshot import TableView
from cowdns.store.zones import Zone, name_key

__all__ = ["ApexFilter", "glue"]


def glue(zone: Zone, view: TableView) -> tuple[dns.rrset.RRset, ...]:
    """A/AAAA of the zone's NS names that lie inside the zone, from the table."""
    records: list[dns.rrset.RRset] = []
    for target in zone.ns:
        if not target.is_subdomain(zone.origin):
            continue
        entry = view.lookup(name_key(target))
        if entry is None:
            continue
        for rdtype in (A, AAAA):
            rrset = address_rrset(target, entry, rdtype, zone)
            if rrset is not None:
                records.append(rrset)
    return tuple(records)


class ApexFilter:
    name = "apex"

    def handle(self, request: Request, zone: Zone | None, view: TableView) -> Answer | None:
        assert zone is not None
        if request.key != zone.key:
            return None
        if request.qtype == dns.rdatatype.SOA:
            return Answer(dns.rcode.NOERROR, (soa_rrset(zone, request.qname),), by=self.name)
        if request.qtype == dns.rdatatype.NS and zone.ns:
            return Answer(
                dns.rcode.NOERROR,
                (ns_rrset(zone, request.qname),),
                additional=glue(zone, view),
                by=self.name,
            )
        return None
