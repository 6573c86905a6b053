"""cowdns: a hot-reloading authoritative DNS server whose readers never lock."""

__version__ = "0.1.0"
