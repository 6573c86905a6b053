"""The file store: one JSON object ``{name: value}`` in a local file."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import trio

from cowdns.errors import SourceError
from cowdns.store.sources import Fetched

__all__ = ["FileSource", "JsonObject", "decode_json_object", "load_json_object"]

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
    except RecursionError:
        raise SourceError(f"{where}: invalid table: JSON nested too deeply") from None
    if not isinstance(obj, dict):
        raise SourceError(
            f"{where}: expected one JSON object {{name: addresses}}, got {type(obj).__name__}"
        )
    return obj


def _error(where: str, text: str, pos: int, message: str) -> SourceError:
    exc = json.JSONDecodeError(message, text, pos)
    return SourceError(f"{where}: invalid JSON at line {exc.lineno} column {exc.colno}: {message}")


def _members(text: str, where: str) -> Iterator[tuple[str, object]]:
    """The members of the JSON object in ``text``, one at a time; SourceError if malformed.

    Each key and value is decoded by the json module's C scanners, so the
    members equal what ``json.loads`` would give (a later duplicate follows the
    earlier one, and wins when put in a dict).
    """
    end = len(text)
    pos = _skip(text, 0)
    if pos >= end or text[pos] != "{":
        load_json_object(text.encode(), where)  # raises its clear message
        raise AssertionError("unreachable")
    pos = _skip(text, pos + 1)
    if pos < end and text[pos] == "}":
        pos += 1
    else:
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
            except RecursionError:
                raise _error(where, text, pos, "nested too deeply") from None
            yield key, value
            pos = _skip(text, pos)
            if pos < end and text[pos] == ",":
                pos = _skip(text, pos + 1)
            elif pos < end and text[pos] == "}":
                pos += 1
                break
            else:
                raise _error(where, text, pos, "Expecting ',' delimiter")
    pos = _skip(text, pos)
    if pos != end:
        raise _error(where, text, pos, "Extra data")


def _text(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{where}: not UTF-8 text ({exc.reason})") from None


class JsonObject(Mapping[str, object]):
    """A big JSON table body, read as a mapping without ever building the dict.

    Iterating decodes members on the fly, so a reload holds the body text and
    the table being built, not a third copy of the table as Python objects.
    Malformed JSON raises SourceError while iterating.  Lookups by key and
    ``len`` scan the whole body: they exist for completeness, not for speed.
    """

    def __init__(self, text: str, where: str) -> None:
        self._text = text
        self._where = where

    def items(self) -> Iterator[tuple[str, object]]:  # type: ignore[override]
        return _members(self._text, self._where)

    def __iter__(self) -> Iterator[str]:
        return (key for key, _value in _members(self._text, self._where))

    def __len__(self) -> int:
        return len(set(self))

    def __getitem__(self, key: str) -> object:
        found: list[object] = [value for name, value in self.items() if name == key]
        if not found:
            raise KeyError(key)
        return found[-1]


async def decode_json_object(data: bytes, where: str, *, chunk: int = 2000) -> dict[str, object]:
    """Like :func:`load_json_object`, yielding to the event loop every ``chunk`` entries."""
    if len(data) <= SMALL_BODY:
        return load_json_object(data, where)
    result: dict[str, object] = {}
    for count, (key, value) in enumerate(_members(_text(data, where), where), 1):
        result[key] = value
        if count % chunk == 0:
            await trio.lowlevel.checkpoint()
    return result


def _read(path: Path, where: str) -> tuple[str, str]:
    """The file's text and digest; in a worker thread (reading, hashing and decoding
    a big file would otherwise hold up the answers)."""
    data = path.read_bytes()
    return _text(data, where), hashlib.sha256(data).hexdigest()[:16]


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
            # Reading and hashing release the GIL: done in a thread, they never stall answers.
            # abandon_on_cancel: a read stuck on a dead mount must not outlive the deadline.
            text, digest = await trio.to_thread.run_sync(
                _read, self.path, self.description, abandon_on_cancel=True
            )
        except OSError as exc:
            raise SourceError(f"{self.description}: {exc.strerror or exc}") from None
        if digest == self._last_digest:
            return None
        # Members are decoded while the table is built: no second copy of the table, and
        # a name given twice reaches the validator twice (it reports the duplicate).
        entries = JsonObject(text, self.description)
        self._last_digest = digest
        return Fetched(entries, f"sha256:{digest}")

    def forget_version(self) -> None:
        """Make the next fetch return the table even if unchanged."""
        self._last_digest = None

    async def aclose(self) -> None:
        return None
