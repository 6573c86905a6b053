"""Assemble a running server from a Config: table, source, reloader, engine, listeners."""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
from dataclasses import dataclass, field
from functools import partial

import trio

from cowdns.admin import AdminApp, AdminListenError, bind_admin, serve_admin
from cowdns.config import Config
from cowdns.engine import Engine
from cowdns.logs import log_queries
from cowdns.server import Listener, bind_listeners, serve_tcp, serve_udp
from cowdns.store.locked import LockedTable
from cowdns.store.reloader import Reloader
from cowdns.store.snapshot import SnapshotHolder
from cowdns.store.sources.urls import open_source
from cowdns.store.watchdog import LockHealth, watch_lock

__all__ = ["Running", "serve"]

log = logging.getLogger("cowdns")


@dataclass
class Running:
    """Handles on a started server (what ``nursery.start(serve, config)`` returns)."""

    config: Config
    listeners: list[Listener]
    engine: Engine
    reloader: Reloader
    table: SnapshotHolder | LockedTable
    cancel_scope: trio.CancelScope
    lock_health: LockHealth | None = None
    """Locked mode: the watchdog's verdict on the table lock."""
    lock_tripped: trio.Event = field(default_factory=trio.Event)
    """Set the first time the watchdog reports a stuck writer."""
    admin_address: tuple[str, int] | None = None
    """Where the admin HTTP listener is bound (port resolved), or None when it is off."""

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [(listener.host, listener.port) for listener in self.listeners]

    def stop(self) -> None:
        self.cancel_scope.cancel()


def _bind_admin(config: Config) -> socket.socket | None:
    admin = config.admin
    if admin.listen is None:
        return None
    try:
        return bind_admin(*admin.listen)
    except AdminListenError as exc:
        if exc.errno == errno.EADDRINUSE and not admin.configured:
            # The built-in default is taken (another cowdns, say): DNS matters more.
            log.warning(
                "admin listener: default address %s is in use; serving DNS without it"
                " (set [admin] listen or --admin to choose another address, or off)",
                exc.where,
            )
            return None
        raise


def _try_line(running: Running) -> str:
    host, port = running.addresses[0]
    table = running.reloader.table.table()
    name = next(iter(table.entries), None) or running.config.zones.zones[0].origin.to_text()
    return f"try: dig @{host} -p {port} {name.rstrip('.')} A"


async def _signals(
    running: Running, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    with trio.open_signal_receiver(signal.SIGHUP, signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()  # handlers are in place before we announce that we listen
        async for signum in signals:
            if signum == signal.SIGHUP:
                log.info("SIGHUP: reloading")
                running.reloader.trigger()
            else:
                log.info("%s: stopping", signal.Signals(signum).name)
                running.stop()
                return


async def serve(
    config: Config,
    *,
    handle_signals: bool = False,
    announce: bool = False,
    reuse_port: bool = False,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Load the table, listen, answer and reload until cancelled."""
    server = config.server
    store = config.store
    table: SnapshotHolder | LockedTable
    if server.mode == "locked":
        table = LockedTable(config.zones)
    else:
        table = SnapshotHolder.empty(config.zones)
    source = open_source(store.url, config.base_dir)
    reloader = Reloader(
        source,
        table,
        interval=store.reload_interval,
        jitter=store.reload_jitter,
        deadline=store.reload_deadline,
        max_shrink=store.max_shrink,
        state_file=store.state_file,
    )
    engine = Engine(table, max_payload=server.max_udp_payload, inject_bug=server.inject_bug)
    if config.log.queries:
        log_queries(engine)
    listeners = await bind_listeners(server.listen, reuse_port=reuse_port)
    admin_sock: socket.socket | None = None
    try:
        admin_sock = _bind_admin(config)
        async with trio.open_nursery() as nursery:
            running = Running(config, listeners, engine, reloader, table, nursery.cancel_scope)
            if isinstance(table, LockedTable):
                running.lock_health = await nursery.start(
                    partial(
                        watch_lock,
                        table.lock,
                        server.watchdog_threshold,
                        on_trip=lambda _message: running.lock_tripped.set(),
                    )
                )
            if admin_sock is not None:
                admin = AdminApp(running)
                admin.attach()  # before the first load, so it is counted
                running.admin_address = admin_sock.getsockname()[:2]
                await nursery.start(serve_admin, admin, admin_sock)
                host, port = running.admin_address
                log.info(
                    "admin listening on http://%s/ (metrics, health, ready, table, reload)",
                    f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
                )
            await nursery.start(reloader.run)
            for listener in listeners:
                nursery.start_soon(serve_udp, listener.udp, engine.handle, engine.answer_now)
                nursery.start_soon(
                    partial(
                        serve_tcp,
                        listener.tcp,
                        engine.handle,
                        idle_timeout=server.tcp_idle_timeout,
                        read_timeout=server.tcp_read_timeout,
                        max_connections=server.tcp_max_connections,
                    )
                )
            if handle_signals:
                await nursery.start(_signals, running)
            served = table.table()
            where = ", ".join(
                f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                for host, port in running.addresses
            )
            if server.inject_bug is not None:
                log.warning(
                    "fault injection on: %s (%s)",
                    server.inject_bug,
                    "locked mode: the first reload will stop all answers"
                    if server.mode == "locked"
                    else "copy-on-write mode has no lock to leak; nothing changes",
                )
            log.info(
                "serving %s on %s (udp+tcp), mode %s, %d names, generation %d",
                ", ".join(zone.origin.to_text() for zone in config.zones),
                where,
                server.mode,
                len(served.entries),
                served.generation,
            )
            # This frame lives as long as the server: holding the first table here
            # would keep it in memory after every reload.
            del served
            if announce:
                print(
                    f"cowdns listening on {where} (udp+tcp), mode {server.mode}, pid {os.getpid()}",
                    flush=True,
                )
                print(_try_line(running), flush=True)
            task_status.started(running)
    finally:
        for listener in listeners:
            listener.close()
        if admin_sock is not None:
            admin_sock.close()
        await source.aclose()
