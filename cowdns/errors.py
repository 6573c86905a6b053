"""The one exception tree of cowdns.

::

    CowdnsError
    ├── ConfigError        a config file or flag is wrong (names the key)
    ├── EntryError         one table entry is invalid (names the key); the entry is skipped
    ├── SourceError        a store could not be read (down, timeout, bad body)
    ├── ReloadRefused      a table was read but policy refused it (shrink guard)
    └── LockError          a read/write lock was misused (release of a lock not held)

Every error carries what a user needs to fix the input; ``str(error)`` is one line.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "CowdnsError",
    "EntryError",
    "LockError",
    "ReloadRefused",
    "SourceError",
]


class CowdnsError(Exception):
    """Base of every error cowdns raises on purpose."""


class ConfigError(CowdnsError):
    """A configuration value is wrong; ``key`` names it (``zone[0].soa.serial``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class EntryError(CowdnsError):
    """One table entry is invalid; ``key`` is the key exactly as the store gave it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key!r}: {message}")
        self.key = key
        self.message = message


class SourceError(CowdnsError):
    """A store could not deliver a usable table (unreachable, timed out, malformed body)."""


class ReloadRefused(CowdnsError):
    """A table was read but refused by policy; the served table stays."""


class LockError(CowdnsError, RuntimeError):
    """A lock was released by someone who does not hold it."""
