"""What every filter sees (a parsed request, one table view) and what it returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import dns.message
import dns.name
import dns.rcode
import dns.rrset

from cowdns.store.snapshot import TableView
from cowdns.store.zones import Zone

__all__ = ["Answer", "Filter", "Request", "Transport"]

Transport = Literal["udp", "tcp"]


@dataclass(frozen=True, slots=True)
class Request:
    """A query that passed the wire policy: exactly one question, EDNS version 0 or none.

    ``key`` is the lower-case table key of ``qname``; ``qname`` keeps the letter
    case of the question so answers echo it.
    """

    message: dns.message.Message
    qname: dns.name.Name
    qtype: int
    qclass: int
    key: str
    transport: Transport
    payload: int
    """How many bytes the answer may take on this transport."""

    @property
    def edns(self) -> bool:
        return self.message.edns >= 0


@dataclass(frozen=True, slots=True)
class Answer:
    """What the chain decided: rcode and sections; the server renders it."""

    rcode: dns.rcode.Rcode
    answer: tuple[dns.rrset.RRset, ...] = ()
    authority: tuple[dns.rrset.RRset, ...] = ()
    additional: tuple[dns.rrset.RRset, ...] = ()
    authoritative: bool = True
    by: str = ""
    """Name of the filter that answered (for metrics and tests)."""


class Filter(Protocol):
    """One step of the chain: answers the request or returns None ("not mine")."""

    name: str

    def handle(self, request: Request, zone: Zone | None, view: TableView) -> Answer | None: ...
