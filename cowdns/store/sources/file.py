"""The file store: one JSON object ``{name: value}`` in a local file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import trio

from cowdns.errors import SourceError
from cowdns.store.sources import Fetched

__all__ = ["FileSource", "load_json_object"]


def load_json_object(data: bytes, where: str) -> dict[str, object]:
    """Decode a JSON table body; every failure is one SourceError line naming ``where``."""
    try:
        obj = json.loads(data)
    except UnicodeDecodeError as exc:
        raise SourceError(f"{where}: not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise SourceError(
            f"{where}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(obj, dict):
        raise SourceError(
            f"{where}: expected one JSON object {{name: addresses}}, got {type(obj).__name__}"
        )
    return obj


class FileSource:
    """Reads a JSON table file; its version is the first 16 hex digits of its SHA-256."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last_digest: str | None = None

    @property
    def description(self) -> str:
        return f"file:{self.path}"

    async def fetch(self) -> Fetched | None:
        try:
            data = await trio.Path(self.path).read_bytes()
        except OSError as exc:
            raise SourceError(f"{self.description}: {exc.strerror or exc}") from None
        digest = hashlib.sha256(data).hexdigest()[:16]
        if digest == self._last_digest:
            return None
        entries = await trio.to_thread.run_sync(load_json_object, data, self.description)
        self._last_digest = digest
        return Fetched(entries, f"sha256:{digest}")

    def forget_version(self) -> None:
        """Make the next fetch return the table even if unchanged."""
        self._last_digest = None

    async def aclose(self) -> None:
        return None
