"""Refuse what is not ours: names outside every zone, classes other than IN, zone transfers."""

from __future__ import annotations

import dns.rcode
import dns.rdataclass
import dns.rdatatype

from cowdns.filters.base import Answer, Request
from cowdns.store.snapshot import TableView
from cowdns.store.zones import Zone

__all__ = ["ZoneFilter"]

REFUSED = Answer(dns.rcode.REFUSED, authoritative=False, by="zone")


class ZoneFilter:
    """We are authoritative only; anything outside our zones is REFUSED with no data.

    Zone transfers (AXFR, IXFR) are REFUSED too, as NSD and Knot answer them
    without a transfer ACL: the table is not a zone file to hand out.
    """

    name = "zone"

    def handle(self, request: Request, zone: Zone | None, view: TableView) -> Answer | None:
        if (
            zone is None
            or request.qclass != dns.rdataclass.IN
            or request.qtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR)
        ):
            return REFUSED
        return None
