"""Refuse what is not ours: names outside every zone, and classes other than IN."""

from __future__ import annotations

import dns.rcode
import dns.rdataclass

from cowdns.filters.base import Answer, Request
from cowdns.store.snapshot import TableView
from cowdns.store.zones import Zone

__all__ = ["ZoneFilter"]

REFUSED = Answer(dns.rcode.REFUSED, authoritative=False, by="zone")


class ZoneFilter:
    """We are authoritative only; anything outside our zones is REFUSED with no data."""

    name = "zone"

    def handle(self, request: Request, zone: Zone | None, view: TableView) -> Answer | None:
        if zone is None or request.qclass != dns.rdataclass.IN:
            return REFUSED
        return None
