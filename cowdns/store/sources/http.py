"""The HTTP store: one JSON object ``{name: value}`` served at a URL.

An unchanged table costs one conditional request: we send the last ETag in
``If-None-Match`` and a 304 means "unchanged".  A server without ETags is
still read in full each time, but a body whose digest equals the last one is
reported unchanged, so the reloader does not rebuild the table for nothing.

No timeouts of our own except for connecting: deadlines are the caller's
cancel scopes (the reloader's ``trio.fail_after``).
"""

from __future__ import annotations

import hashlib

import httpx

from cowdns.errors import SourceError
from cowdns.store.sources import Fetched
from cowdns.store.sources.file import decode_json_object

__all__ = ["HttpSource"]

# A server that does not accept a connection within this time is down for us.
_CONNECT_TIMEOUT = 10.0


def _redacted(url: httpx.URL) -> str:
    """The URL for logs: without user name and password."""
    if url.userinfo:
        url = url.copy_with(username=None, password=None)
    return str(url)


class HttpSource:
    """GETs the table from ``url``; its version is the ETag, else a digest of the body.

    Pass ``client`` to share a connection pool or to configure TLS, proxies or
    authentication; a source that made its own client closes it in :meth:`aclose`.
    """

    def __init__(self, url: str, client: httpx.AsyncClient | None = None) -> None:
        self.url = httpx.URL(url)
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(None, connect=_CONNECT_TIMEOUT), follow_redirects=True
        )
        self._etag: str | None = None
        self._version: str | None = None
        self._description = _redacted(self.url)

    @property
    def description(self) -> str:
        return self._description

    async def fetch(self) -> Fetched | None:
        """GET the table; None on 304 or when the body's version equals the last one."""
        headers = {"Accept": "application/json"}
        if self._etag is not None:
            headers["If-None-Match"] = self._etag
        try:
            response = await self._client.get(self.url, headers=headers)
        except httpx.HTTPError as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SourceError(f"{self.description}: {detail}") from exc
        if response.status_code == httpx.codes.NOT_MODIFIED and self._etag is not None:
            return None
        if not response.is_success:
            raise SourceError(
                f"{self.description}: HTTP {response.status_code} {response.reason_phrase}".rstrip()
            )
        body = response.content
        etag = response.headers.get("ETag")
        version = etag or "sha256:" + hashlib.sha256(body).hexdigest()[:16]
        if version == self._version:
            # A server that ignores If-None-Match, or one without ETags: same body.
            return None
        # Decoding a large body is real work: keep it off the event loop.
        entries = await decode_json_object(body, self.description)
        self._etag = etag or None
        self._version = version
        return Fetched(entries, version)

    def forget_version(self) -> None:
        """Drop the ETag and the last version: the next fetch reads the whole body."""
        self._etag = None
        self._version = None

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()
