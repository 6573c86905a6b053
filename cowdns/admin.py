"""The admin HTTP listener: metrics, health, readiness, the served table, reloads.

It runs inside the server's trio process on hypercorn's trio worker, with a
hand-written ASGI callable (five routes do not need a framework).  Every
handler reads state the server already keeps; none of them touches the query
path.

==============  ======  =====================================================
path            method  answer
==============  ======  =====================================================
/metrics        GET     Prometheus text format
/health         GET     200 ``ok``; 503 and the watchdog's one-line reason when
                        the table lock's writer is stuck (locked mode)
/ready          GET     200 once the first table is loaded, 503 before
/table          GET     JSON about the served table
/reload         POST    run a full reload now (``?force=1`` re-reads an
                        unchanged source and overrides the shrink guard);
                        JSON outcome: 200 loaded/unchanged, 409 refused by the
                        shrink guard, 502 failed (store unreachable, bad data,
                        deadline)
==============  ======  =====================================================

Unknown paths are 404, other methods 405 (HEAD is served wherever GET is).

The socket is bound by :func:`bind_admin` before hypercorn starts, so a bad
address fails start-up at once with the address in the error, port 0 works,
and the bound address is known without asking hypercorn.  hypercorn gets a
duplicate of the descriptor (``fd://``) and closes it itself; we close ours.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from cowdns.metrics import CONTENT_TYPE, ReloadTally, make_registry, render

if TYPE_CHECKING:
    from cowdns.app import Running

__all__ = ["AdminApp", "AdminListenError", "bind_admin", "reload_status", "serve_admin"]

log = logging.getLogger("cowdns.admin")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_TRUE = frozenset({"1", "true", "yes", "on"})

_RELOAD_STATUS = {"loaded": 200, "unchanged": 200, "refused": 409, "failed": 502}


def reload_status(outcome: str) -> int:
    """HTTP status of ``POST /reload`` for a reload outcome."""
    return _RELOAD_STATUS.get(outcome, 500)


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[bytes, bytes], ...] = field(default=())


def _text(status: int, line: str) -> _Response:
    return _Response(status, (line + "\n").encode())


def _json(status: int, body: object) -> _Response:
    return _Response(status, json.dumps(body, indent=2).encode() + b"\n", "application/json")


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds")


class AdminApp:
    """The ASGI application of the admin listener, over one running server."""

    def __init__(self, running: Running, reloads: ReloadTally | None = None) -> None:
        self.running = running
        self.reloads = ReloadTally() if reloads is None else reloads
        self.registry = make_registry(running, self.reloads)
        # (path → (methods, handler)); HEAD is allowed wherever GET is.
        self.routes: dict[str, tuple[frozenset[str], Callable[[Scope], Awaitable[_Response]]]] = {
            "/metrics": (frozenset({"GET"}), self._metrics),
            "/health": (frozenset({"GET"}), self._health),
            "/ready": (frozenset({"GET"}), self._ready),
            "/table": (frozenset({"GET"}), self._table),
            "/reload": (frozenset({"POST"}), self._reload),
        }

    def attach(self) -> None:
        """Count reloads and rejected keys from now on (call before the first load)."""
        reloader = self.running.reloader
        reloader.on_result.append(self.reloads.on_result)
        reloader.on_rejected.append(self.reloads.on_rejected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        response = await self._dispatch(scope, receive)
        headers = [
            (b"content-type", response.content_type.encode()),
            (b"content-length", str(len(response.body)).encode()),
            (b"cache-control", b"no-store"),
            *response.headers,
        ]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        body = b"" if scope["method"] == "HEAD" else response.body
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _dispatch(self, scope: Scope, receive: Receive) -> _Response:
        # Drain the request body: none of the routes reads one.
        while True:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        route = self.routes.get(scope["path"])
        if route is None:
            return _text(404, f"not found: {scope['path']} (try /metrics, /health, /ready, /table)")
        methods, handler = route
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        if method not in methods:
            allowed = ", ".join(sorted(methods | ({"HEAD"} if "GET" in methods else set())))
            response = _text(405, f"method {scope['method']} not allowed on {scope['path']}")
            return _Response(
                response.status,
                response.body,
                response.content_type,
                ((b"allow", allowed.encode()),),
            )
        return await handler(scope)

    async def _metrics(self, scope: Scope) -> _Response:
        return _Response(200, render(self.registry), CONTENT_TYPE)

    async def _health(self, scope: Scope) -> _Response:
        health = self.running.lock_health
        if health is not None and not health.healthy:
            reason = " ".join(health.reason.split())  # one line, whatever the holders' names
            return _text(503, f"unhealthy: {reason}")
        return _text(200, "ok")

    async def _ready(self, scope: Scope) -> _Response:
        reloader = self.running.reloader
        if reloader.loaded.is_set():
            table = reloader.table.table()
            return _text(200, f"ready: generation {table.generation}, {len(table.entries)} names")
        last = reloader.last_result
        why = f" (last reload {last.outcome}: {last.error})" if last and last.error else ""
        return _text(503, f"not ready: no table loaded yet{why}")

    async def _table(self, scope: Scope) -> _Response:
        reloader = self.running.reloader
        table = reloader.table.table()
        last = reloader.last_result
        return _json(
            200,
            {
                "generation": table.generation,
                "names": len(table.entries),
                "version": table.version,
                "loaded_at": _iso(table.loaded_at),
                "loaded_at_unix": table.loaded_at,
                "source": reloader.source.description,
                "mode": self.running.config.server.mode,
                "last_reload": None if last is None else last.to_json(),
            },
        )

    async def _reload(self, scope: Scope) -> _Response:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        force = any(value.lower() in _TRUE for value in query.get("force", []))
        log.info("reload requested over HTTP%s", " (forced)" if force else "")
        result = await self.running.reloader.reload(force=force)
        return _json(reload_status(result.outcome), result.to_json())


class AdminListenError(OSError):
    """The admin listener's address cannot be bound; ``where`` is ``HOST:PORT``."""

    def __init__(self, where: str, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.where = where

    def __str__(self) -> str:
        return f"admin listener {self.where}: {self.strerror}"


def bind_admin(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: any free port); AdminListenError if not."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    sock: socket.socket | None = None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _name, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise AdminListenError(where, exc) from exc
    return sock


class _QuietStartup(logging.Filter):
    # hypercorn announces "Running on ... (CTRL + C to quit)"; cowdns says it once, its way.
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Running on ")


_http_log = logging.getLogger("cowdns.admin.http")
_http_log.addFilter(_QuietStartup())


async def serve_admin(
    app: AdminApp,
    sock: socket.socket,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on the bound ``sock`` until cancelled; started once it accepts.

    ``nursery.start`` returns hypercorn's list of URLs (``["http://127.0.0.1:9153"]``).
    """
    config = HypercornConfig()
    config.bind = [f"fd://{os.dup(sock.fileno())}"]
    config.errorlog = _http_log
    config.accesslog = None
    config.include_server_header = False
    config.graceful_timeout = 1.0
    try:
        # Our ASGI types are plain mappings; hypercorn's are TypedDicts per scope type.
        await hypercorn_serve(cast(Any, app), config, task_status=task_status)
    finally:
        sock.close()
