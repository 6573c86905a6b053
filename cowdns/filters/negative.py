"""The last word: NODATA for names that exist, NXDOMAIN for the rest; both carry the SOA."""

from __future__ import annotations

import dns.rcode

from cowdns.filters.base import Answer, Request
from cowdns.filters.records import soa_rrset
from cowdns.store.snapshot import TableView
from cowdns.store.zones import Zone

__all__ = ["NegativeFilter"]


class NegativeFilter:
    """Existing name (apex, table name, or empty non-terminal) → NOERROR/NODATA, else NXDOMAIN.

    The authority section holds only the SOA, with the negative TTL; never an NS set.
    """

    name = "negative"

    def handle(self, request: Request, zone: Zone | None, view: TableView) -> Answer:
        assert zone is not None
        key = request.key
        exists = key == zone.key or view.lookup(key) is not None or view.has_descendants(key)
        rcode = dns.rcode.NOERROR if exists else dns.rcode.NXDOMAIN
        return Answer(rcode, authority=(soa_rrset(zone, negative=True),), by=self.name)
