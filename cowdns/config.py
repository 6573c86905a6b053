"""The TOML config file and the command-line overrides on top of it.

Every mistake becomes one :class:`~cowdns.errors.ConfigError` naming the key
(``zone[0].soa.serial``) and what is wrong with it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import dns.exception
import dns.name

from cowdns.errors import ConfigError
from cowdns.store.zones import Soa, Zone, Zones

__all__ = [
    "ADMIN_LISTEN",
    "AdminConfig",
    "Config",
    "LogConfig",
    "ServerConfig",
    "StoreConfig",
    "load_config",
    "parse_admin_listen",
    "parse_config",
    "parse_listen",
]

Mode = Literal["cow", "locked"]
MODES: tuple[Mode, ...] = ("cow", "locked")
BUGS = ("missing-runlock",)
LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
ADMIN_LISTEN = ("127.0.0.1", 9153)
"""Where the admin HTTP listener binds unless told otherwise: loopback only."""
U32 = 2**32 - 1
S32 = 2**31 - 1

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: tuple[tuple[str, int], ...] = (("127.0.0.1", 1053),)
    mode: Mode = "cow"
    max_udp_payload: int = 1232
    tcp_idle_timeout: float = 10.0
    tcp_read_timeout: float = 5.0
    tcp_max_connections: int = 128
    inject_bug: str | None = None
    watchdog_threshold: float = 5.0


@dataclass(frozen=True, slots=True)
class StoreConfig:
    url: str = "file:table.json"
    reload_interval: float = 300.0
    reload_jitter: float = 0.1
    reload_deadline: float = 60.0
    max_shrink: float = 0.5
    state_file: Path | None = None


@dataclass(frozen=True, slots=True)
class AdminConfig:
    listen: tuple[str, int] | None = ADMIN_LISTEN
    """HTTP admin listener (metrics, health, table, reload); None when off."""
    configured: bool = False
    """Whether ``listen`` was given (config or flag) rather than defaulted: a defaulted
    address that is already taken only costs the admin listener, never the DNS service."""


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"
    format: LogFormat = "text"
    queries: bool = False
    """Log one line per answered query (off by default: it costs on the hot path)."""


@dataclass(frozen=True, slots=True)
class Config:
    zones: Zones
    base_dir: Path
    server: ServerConfig = field(default_factory=ServerConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def with_overrides(self, **changes: Any) -> Config:
        """A copy with section fields replaced: ``server_mode="locked"``, ``log_format="json"``.

        ``admin_listen`` takes ``(host, port)`` or ``"off"``; None leaves a field as it is.
        """
        sections: dict[str, dict[str, Any]] = {"server": {}, "store": {}, "admin": {}, "log": {}}
        for key, value in changes.items():
            if value is None:
                continue
            section, _, name = key.partition("_")
            if section not in sections:
                raise TypeError(f"with_overrides: unknown setting {key!r}")
            if key == "admin_listen":
                value = None if value == "off" else value
                sections["admin"]["configured"] = True
            sections[section][name] = value
        return replace(
            self,
            server=replace(self.server, **sections["server"]),
            store=replace(self.store, **sections["store"]),
            admin=replace(self.admin, **sections["admin"]),
            log=replace(self.log, **sections["log"]),
        )


def parse_admin_listen(text: str, key: str = "admin.listen") -> tuple[str, int] | None:
    """``HOST:PORT``, ``[V6]:PORT`` or ``off`` (None)."""
    if isinstance(text, str) and text.strip().lower() == "off":
        return None
    return parse_listen(text, key)


def parse_listen(text: str, key: str = "server.listen") -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` → (host, port)."""
    if not isinstance(text, str):
        raise ConfigError(key, f'expected "HOST:PORT", got {text!r}')
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
    else:
        host, sep, port_text = text.rpartition(":")
    if (
        not sep
        or not host
        or not (port_text.isascii() and port_text.isdigit())
        or not 0 <= int(port_text) <= 65535
    ):
        raise ConfigError(key, f'expected "HOST:PORT" such as "127.0.0.1:1053", got {text!r}')
    return host, int(port_text)


class _Section:
    """Typed access to one TOML table that names the key on every error."""

    def __init__(self, data: Mapping[str, Any], path: str, known: set[str]) -> None:
        self.data = data
        self.path = path
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(self.key(unknown[0]), "unknown key")

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str, kind: type[T], default: T) -> T:
        if name not in self.data:
            return default
        value = self.data[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise ConfigError(self.key(name), f"expected {kind.__name__}, got {value!r}")
        return value

    def number(self, name: str, default: float, low: float, high: float) -> float:
        value = self.get(name, float, default)
        if not low <= value <= high:
            raise ConfigError(self.key(name), f"{value:g} is out of range {low:g}..{high:g}")
        return value

    def integer(self, name: str, default: int | None, low: int, high: int) -> int:
        if default is None and name not in self.data:
            raise ConfigError(self.key(name), "missing")
        value = self.get(name, int, default if default is not None else 0)
        if not low <= value <= high:
            raise ConfigError(self.key(name), f"{value} is out of range {low}..{high}")
        return value

    def name(self, name: str, default: str | None = None) -> dns.name.Name:
        if default is None and name not in self.data:
            raise ConfigError(self.key(name), "missing")
        text = self.get(name, str, default or "")
        try:
            return dns.name.from_text(text) if text.isascii() else dns.name.from_unicode(text)
        except (dns.exception.DNSException, UnicodeError) as exc:
            raise ConfigError(self.key(name), f"{text!r} is not a DNS name ({exc})") from None

    def section(self, name: str, known: set[str]) -> _Section:
        value = self.data.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(self.key(name), "expected a table")
        return _Section(value, self.key(name), known)


def _parse_zone(data: Any, path: str) -> Zone:
    if not isinstance(data, dict):
        raise ConfigError(path, "expected a table")
    zone = _Section(data, path, {"origin", "ttl", "ns", "soa"})
    origin = zone.name("origin")
    if origin == dns.name.root:
        raise ConfigError(zone.key("origin"), "the root zone cannot be served")
    ttl = zone.integer("ttl", 300, 0, S32)
    ns_raw = zone.get("ns", list, [])
    ns: list[dns.name.Name] = []
    for i, item in enumerate(ns_raw):
        ns.append(_Section({f"ns[{i}]": item}, path, {f"ns[{i}]"}).name(f"ns[{i}]"))
    soa = zone.section(
        "soa", {"mname", "rname", "serial", "refresh", "retry", "expire", "minimum", "ttl"}
    )
    default_mname = ns[0].to_text() if ns else f"ns1.{origin.to_text()}"
    return Zone(
        origin,
        ttl,
        tuple(ns),
        Soa(
            mname=soa.name("mname", default_mname),
            rname=soa.name("rname", f"hostmaster.{origin.to_text()}"),
            serial=soa.integer("serial", 1, 0, U32),
            refresh=soa.integer("refresh", 7200, 0, S32),
            retry=soa.integer("retry", 900, 0, S32),
            expire=soa.integer("expire", 1209600, 0, S32),
            minimum=soa.integer("minimum", 300, 0, S32),
            ttl=soa.integer("ttl", 3600, 0, S32),
        ),
    )


def parse_config(data: Mapping[str, Any], base_dir: Path) -> Config:
    """Build a Config from decoded TOML; relative paths resolve against ``base_dir``."""
    top = _Section(data, "", {"server", "store", "zone", "admin", "log"})
    server = top.section(
        "server",
        {
            "listen",
            "mode",
            "max_udp_payload",
            "tcp_idle_timeout",
            "tcp_read_timeout",
            "tcp_max_connections",
            "inject_bug",
            "watchdog_threshold",
        },
    )
    listen_raw = server.get("listen", list, ["127.0.0.1:1053"])
    listen = tuple(parse_listen(item, f"server.listen[{i}]") for i, item in enumerate(listen_raw))
    if not listen:
        raise ConfigError("server.listen", "needs at least one address")
    for i, address in enumerate(listen):
        if address in listen[:i] and address[1] != 0:
            raise ConfigError(f"server.listen[{i}]", f"{listen_raw[i]} is listed twice")
    mode: Any = server.get("mode", str, "cow")
    if mode not in MODES:
        raise ConfigError("server.mode", f"expected one of {', '.join(MODES)}, got {mode!r}")
    bug = server.get("inject_bug", str, "") or None
    if bug is not None and bug not in BUGS:
        raise ConfigError("server.inject_bug", f"expected one of {', '.join(BUGS)}, got {bug!r}")
    server_config = ServerConfig(
        listen=listen,
        mode=mode,
        max_udp_payload=server.integer("max_udp_payload", 1232, 512, 65535),
        tcp_idle_timeout=server.number("tcp_idle_timeout", 10.0, 0.1, 3600),
        tcp_read_timeout=server.number("tcp_read_timeout", 5.0, 0.1, 3600),
        tcp_max_connections=server.integer("tcp_max_connections", 128, 1, 100000),
        inject_bug=bug,
        watchdog_threshold=server.number("watchdog_threshold", 5.0, 0.01, 86400),
    )

    store = top.section(
        "store",
        {"url", "reload_interval", "reload_jitter", "reload_deadline", "max_shrink", "state_file"},
    )
    url = store.get("url", str, "file:table.json")
    if url.startswith("file:"):
        if not url[len("file:") :].strip():
            raise ConfigError("store.url", 'file: needs a path, such as "file:table.json"')
        path = Path(url[len("file:") :])
        url = f"file:{path if path.is_absolute() else base_dir / path}"
    state = store.get("state_file", str, "")
    store_config = StoreConfig(
        url=url,
        reload_interval=store.number("reload_interval", 300.0, 0.01, 86400 * 7),
        reload_jitter=store.number("reload_jitter", 0.1, 0.0, 0.5),
        reload_deadline=store.number("reload_deadline", 60.0, 0.01, 3600),
        max_shrink=store.number("max_shrink", 0.5, 0.0, 1.0),
        state_file=(base_dir / state) if state else None,
    )

    admin = top.section("admin", {"listen"})
    admin_config = AdminConfig()
    if "listen" in admin.data:
        admin_config = AdminConfig(
            parse_admin_listen(admin.get("listen", str, ""), admin.key("listen")), configured=True
        )

    log = top.section("log", {"level", "format", "queries"})
    level = log.get("level", str, "info").lower()
    if level not in LOG_LEVELS:
        raise ConfigError("log.level", f"expected one of {', '.join(LOG_LEVELS)}, got {level!r}")
    log_format: Any = log.get("format", str, "text")
    if log_format not in LOG_FORMATS:
        raise ConfigError(
            "log.format", f"expected one of {', '.join(LOG_FORMATS)}, got {log_format!r}"
        )
    log_config = LogConfig(level, log_format, log.get("queries", bool, False))

    zones_raw = data.get("zone", [])
    if not isinstance(zones_raw, list) or not zones_raw:
        raise ConfigError("zone", "at least one [[zone]] is required")
    zones = tuple(_parse_zone(item, f"zone[{i}]") for i, item in enumerate(zones_raw))
    seen: set[dns.name.Name] = set()
    for i, zone in enumerate(zones):
        if zone.origin in seen:
            raise ConfigError(f"zone[{i}].origin", f"{zone.origin} is configured twice")
        seen.add(zone.origin)
    return Config(Zones(zones), base_dir, server_config, store_config, admin_config, log_config)


def load_config(path: Path) -> Config:
    """Read and validate a TOML config file."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(str(path), "no such file") from None
    except OSError as exc:
        raise ConfigError(str(path), exc.strerror or str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from None
    return parse_config(data, path.resolve().parent)
