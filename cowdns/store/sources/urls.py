"""``store.url`` → a source.

Accepted forms:

* ``file:PATH`` — a JSON table file; a relative PATH is relative to ``base_dir``
  (the config file's folder).  ``file:///abs/path`` works too.
* ``http://…`` and ``https://…`` — a JSON table served over HTTP.
* ``etcd://HOST:PORT[,HOST:PORT…]/PREFIX`` — keys under PREFIX in etcd, over
  plain HTTP to the listed members.  PREFIX is the URL path exactly as given,
  leading slash included (percent-escapes decoded):
  ``etcd://127.0.0.1:2379/dns/`` reads the keys ``/dns/<name>``.  The prefix must
  end with ``/``, so ``/dns`` cannot also pick up ``/dnsx/…``, and must not be
  just ``/`` (that would be the whole keyspace, and ``cowdns push`` replaces
  everything under the prefix).  The port defaults to 2379.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from cowdns.errors import ConfigError
from cowdns.store.sources import Source
from cowdns.store.sources.etcd import EtcdSource
from cowdns.store.sources.file import FileSource
from cowdns.store.sources.http import HttpSource

__all__ = ["open_source", "parse_etcd_url"]

_KEY = "store.url"
_ETCD_PORT = 2379


def open_source(url: str, base_dir: Path) -> Source:
    """The source ``url`` names; raises ConfigError(``store.url``) for a bad URL."""
    text = url.strip()
    scheme, colon, rest = text.partition(":")
    scheme = scheme.lower()
    if not colon or not scheme:
        raise ConfigError(
            _KEY, f"{url!r} has no scheme; use file:PATH, http(s)://… or etcd://HOST:PORT/PREFIX"
        )
    if scheme == "file":
        return FileSource(_file_path(rest, base_dir, url))
    if scheme in ("http", "https"):
        parsed = urllib.parse.urlsplit(text)
        if not parsed.hostname:
            raise ConfigError(_KEY, f"{url!r} has no host")
        return HttpSource(text)
    if scheme == "etcd":
        endpoints, prefix = parse_etcd_url(text)
        return EtcdSource(endpoints, prefix)
    raise ConfigError(
        _KEY, f"unknown scheme {scheme!r} in {url!r}; use file:, http:, https: or etcd:"
    )


def _file_path(rest: str, base_dir: Path, url: str) -> Path:
    if rest.startswith("//"):
        parsed = urllib.parse.urlsplit("file:" + rest)
        if parsed.netloc not in ("", "localhost"):
            raise ConfigError(_KEY, f"{url!r}: file URLs cannot name another host")
        rest = urllib.parse.unquote(parsed.path)
    if not rest:
        raise ConfigError(_KEY, f"{url!r} names no file")
    path = Path(rest)
    return path if path.is_absolute() else base_dir / path


def parse_etcd_url(url: str) -> tuple[list[str], str]:
    """``etcd://h1:p1,h2:p2/prefix/`` → (client URLs of the members, key prefix)."""
    scheme, _, rest = url.strip().partition("://")
    if scheme.lower() != "etcd" or not rest:
        raise ConfigError(_KEY, f"{url!r} is not etcd://HOST:PORT[,HOST:PORT…]/PREFIX")
    hosts, slash, path = rest.partition("/")
    path = slash + path
    if "?" in path or "#" in path:
        raise ConfigError(_KEY, f"{url!r}: etcd URLs take no query or fragment")
    if "@" in hosts:
        raise ConfigError(_KEY, f"{url!r}: etcd URLs take no user name or password")
    endpoints = [_endpoint(host.strip(), url) for host in hosts.split(",")]
    prefix = urllib.parse.unquote(path)
    if not prefix or prefix == "/":
        raise ConfigError(_KEY, f"{url!r} needs a key prefix, e.g. etcd://127.0.0.1:2379/dns/")
    if not prefix.endswith("/"):
        raise ConfigError(
            _KEY, f"{url!r}: the key prefix {prefix!r} must end with '/' (e.g. {prefix + '/'!r})"
        )
    return endpoints, prefix


def _endpoint(host: str, url: str) -> str:
    if not host:
        raise ConfigError(_KEY, f"{url!r} has an empty host")
    parsed = urllib.parse.urlsplit("//" + host)
    try:
        port = parsed.port
    except ValueError:
        raise ConfigError(_KEY, f"{url!r}: bad port in {host!r}") from None
    hostname = parsed.hostname
    if not hostname:
        raise ConfigError(_KEY, f"{url!r}: bad host {host!r}")
    if ":" in hostname:
        hostname = f"[{hostname}]"  # IPv6 literal
    return f"http://{hostname}:{port or _ETCD_PORT}"
