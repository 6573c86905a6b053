"""The filter chain, built once and ordered here, in one place."""

from __future__ import annotations

from cowdns.filters.address import AddressFilter
from cowdns.filters.any import AnyFilter
from cowdns.filters.apex import ApexFilter
from cowdns.filters.base import Answer, Filter, Request
from cowdns.filters.negative import NegativeFilter
from cowdns.filters.zone import ZoneFilter
from cowdns.store.snapshot import TableView

__all__ = ["CHAIN", "resolve"]

# Order matters:
#   zone      first, so nothing outside our zones or class IN is ever looked up;
#   apex      before address/any, since apex SOA/NS come from config, not the table;
#   any       before address, which would otherwise ignore ANY;
#   address   the common case;
#   negative  last: it always answers, so whatever nobody claimed is NODATA or NXDOMAIN.
CHAIN: tuple[Filter, ...] = (
    ZoneFilter(),
    ApexFilter(),
    AnyFilter(),
    AddressFilter(),
    NegativeFilter(),
)


def resolve(request: Request, view: TableView, chain: tuple[Filter, ...] = CHAIN) -> Answer:
    """Run ``request`` through ``chain`` against one table view; pure, never awaits."""
    zone = view.zones.find(request.qname)
    for step in chain:
        answer = step.handle(request, zone, view)
        if answer is not None:
            return answer
    raise AssertionError("the negative filter answers every request")
