"""The file store: one JSON object ``{name: value}`` in a local file."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import trio

from cowdns.errors import SourceError
from cowdns.store.sources import Fetched

__all__ = ["FileSource", "decode_json_object", "load_json_object"]

# Bodies up to this size are decoded in one call; bigger ones entry by entry, with
# checkpoints, so that decoding a million-name table never stalls the answers.
SMALL_BODY = 1 << 20

# The json module's C scanners (untyped in its stubs): one value or one string at a time.
_Scanner = Callable[[str, int], tuple[object, int]]
_SCAN: _Scanner = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_SCANSTRING: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _skip(text: str, pos: int) -> int:
    match = _WHITESPACE.match(text, pos)
    assert match is not None  # "*" always matches
    return match.end()


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


def _error(where: str, text: str, pos: int, message: str) -> SourceError:
    exc = json.JSONDecodeError(message, text, pos)
    return SourceError(f"{where}: invalid JSON at line {exc.lineno} column {exc.colno}: {message}")


async def decode_json_object(data: bytes, where: str, *, chunk: int = 2000) -> dict[str, object]:
    """Like :func:`load_json_object`, yielding to the event loop every ``chunk`` entries.

    The top-level object is walked here one member at a time; each key and
    value is decoded by the json module's C scanner, so the result equals
    ``json.loads`` (later duplicates win) at nearly its speed.
    """
    if len(data) <= SMALL_BODY:
        return load_json_object(data, where)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{where}: not UTF-8 text ({exc.reason})") from None
    end = len(text)
    pos = _skip(text, 0)
    if pos >= end or text[pos] != "{":
        return load_json_object(data, where)  # not an object: its own clear message
    result: dict[str, object] = {}
    pos = _skip(text, pos + 1)
    if pos < end and text[pos] == "}":
        pos += 1
    else:
        count = 0
        while True:
            if pos >= end or text[pos] != '"':
                raise _error(where, text, pos, "Expecting property name enclosed in double quotes")
            try:
                key, pos = _SCANSTRING(text, pos + 1)
                pos = _skip(text, pos)
                if pos >= end or text[pos] != ":":
                    raise _error(where, text, pos, "Expecting ':' delimiter")
                pos = _skip(text, pos + 1)
                value, pos = _SCAN(text, pos)
            except json.JSONDecodeError as exc:
                raise _error(where, text, exc.pos, exc.msg) from None
            except StopIteration as stop:
                raise _error(where, text, stop.value, "Expecting value") from None
            result[key] = value
            pos = _skip(text, pos)
            if pos < end and text[pos] == ",":
                pos = _skip(text, pos + 1)
            elif pos < end and text[pos] == "}":
                pos += 1
                break
            else:
                raise _error(where, text, pos, "Expecting ',' delimiter")
            count += 1
            if count % chunk == 0:
                await trio.lowlevel.checkpoint()
    pos = _skip(text, pos)
    if pos != end:
        raise _error(where, text, pos, "Extra data")
    return result


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
        entries = await decode_json_object(data, self.description)
        self._last_digest = digest
        return Fetched(entries, f"sha256:{digest}")

    def forget_version(self) -> None:
        """Make the next fetch return the table even if unchanged."""
        self._last_digest = None

    async def aclose(self) -> None:
        return None
