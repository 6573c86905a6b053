"""Build RRsets from zone config and table entries (shared by the filters)."""

from __future__ import annotations

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.NS
import dns.rdtypes.ANY.SOA
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rrset

from cowdns.store.table import Entry
from cowdns.store.zones import Zone

__all__ = ["address_rrset", "ns_rrset", "soa_rrset"]

IN = dns.rdataclass.IN
A = dns.rdatatype.A
AAAA = dns.rdatatype.AAAA


def address_rrset(
    owner: dns.name.Name, entry: Entry, rdtype: dns.rdatatype.RdataType, zone: Zone
) -> dns.rrset.RRset | None:
    """The A or AAAA RRset of ``entry`` at ``owner``, or None when it has no such address."""
    addresses = entry.v4 if rdtype == A else entry.v6
    if not addresses:
        return None
    rrset = dns.rrset.RRset(owner, IN, rdtype)
    make = dns.rdtypes.IN.A.A if rdtype == A else dns.rdtypes.IN.AAAA.AAAA
    for address in addresses:
        rrset.add(make(IN, rdtype, address))
    rrset.ttl = zone.ttl if entry.ttl is None else entry.ttl
    return rrset


def soa_rrset(
    zone: Zone, owner: dns.name.Name | None = None, *, negative: bool = False
) -> dns.rrset.RRset:
    """The zone's SOA; in negative answers its TTL is min(SOA TTL, minimum) (RFC 2308 §5)."""
    soa = zone.soa
    rrset = dns.rrset.RRset(owner or zone.origin, IN, dns.rdatatype.SOA)
    rrset.add(
        dns.rdtypes.ANY.SOA.SOA(  # type: ignore[no-untyped-call]
            IN,
            dns.rdatatype.SOA,
            soa.mname,
            soa.rname,
            soa.serial,
            soa.refresh,
            soa.retry,
            soa.expire,
            soa.minimum,
        )
    )
    rrset.ttl = soa.negative_ttl if negative else soa.ttl
    return rrset


def ns_rrset(zone: Zone, owner: dns.name.Name) -> dns.rrset.RRset:
    rrset = dns.rrset.RRset(owner, IN, dns.rdatatype.NS)
    for target in zone.ns:
        rrset.add(dns.rdtypes.ANY.NS.NS(IN, dns.rdatatype.NS, target))  # type: ignore[no-untyped-call]
    rrset.ttl = zone.soa.ttl
    return rrset
