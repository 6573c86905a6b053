"""The ``cowdns`` command: serve, check, push, lockcheck."""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import trio

from cowdns import __version__
from cowdns.config import (
    BUGS,
    LOG_FORMATS,
    LOG_LEVELS,
    MODES,
    Config,
    load_config,
    parse_admin_listen,
    parse_listen,
)
from cowdns.errors import ConfigError, CowdnsError

__all__ = ["main", "run"]


def _seconds(low: float, high: float) -> Callable[[str], float]:
    """An argparse type for a number of seconds in [low, high] (the config file's range)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is out of range {low:g}..{high:g}")
        return value

    return parse


def _listen(text: str) -> tuple[str, int]:
    try:
        return parse_listen(text, "--listen")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _admin(text: str) -> tuple[str, int] | str:
    try:
        address = parse_admin_listen(text, "--admin")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f'{exc.message} or "off"') from None
    return "off" if address is None else address


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cowdns",
        description="Hot-reloading authoritative DNS server with a copy-on-write IP table.",
    )
    parser.add_argument("--version", action="version", version=f"cowdns {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="answer DNS queries from the configured zones")
    serve.add_argument("--config", "-c", type=Path, required=True, help="TOML config file")
    serve.add_argument(
        "--listen",
        action="append",
        type=_listen,
        metavar="HOST:PORT",
        help="address to serve on UDP and TCP (repeatable; replaces server.listen)",
    )
    serve.add_argument("--mode", choices=MODES, help="table design (default: cow)")
    serve.add_argument("--store", metavar="URL", help="table store URL (replaces store.url)")
    serve.add_argument(
        "--reload-interval",
        type=_seconds(0.01, 86400 * 7),
        metavar="SECONDS",
        help="periodic reload interval",
    )
    serve.add_argument("--state-file", type=Path, help="where the last good table is kept")
    serve.add_argument(
        "--inject-bug", choices=BUGS, help="reproduce the original locked-mode deadlock"
    )
    serve.add_argument(
        "--watchdog-threshold",
        type=_seconds(0.01, 86400),
        metavar="SECONDS",
        help="locked mode: report a writer waiting longer than this",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="run N processes on the same ports (SO_REUSEPORT), each with its own reloader",
    )
    serve.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    serve.add_argument(
        "--admin",
        type=_admin,
        metavar="HOST:PORT|off",
        help="HTTP admin listener: /metrics, /health, /ready, /table, POST /reload"
        " (default: admin.listen, else 127.0.0.1:9153; off disables it)",
    )
    serve.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        help="log verbosity (default: log.level, else info)",
    )
    serve.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="text, or json: one object per line (default: log.format, else text)",
    )
    serve.add_argument(
        "--log-queries",
        action="store_true",
        default=None,
        help="log one line per answered query (default: log.queries, else off)",
    )
    check = commands.add_parser(
        "check", help="validate a config file and its table; print every problem"
    )
    check.add_argument("--config", "-c", type=Path, required=True, help="TOML config file")
    check.add_argument(
        "--table", type=Path, help="table file to check (default: read the configured store)"
    )

    push = commands.add_parser("push", help="replace the table under an etcd prefix by a file")
    push.add_argument("file", type=Path, help="JSON table file")
    push.add_argument("--store", required=True, metavar="etcd://HOST:PORT/PREFIX")
    push.add_argument(
        "--config",
        "-c",
        type=Path,
        help="validate the file against these zones first; refuse to push if it has errors",
    )
    push.add_argument("--force", action="store_true", help="push even if validation fails")
    push.add_argument(
        "--quiet", "-q", action="store_true", help="print the summary only, not every name"
    )

    lockcheck = commands.add_parser(
        "lockcheck",
        help="list lock acquires/releases in Python code and flag paths that leave a lock held",
        add_help=False,
    )
    lockcheck.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _serve_config(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    store_url = args.store
    if store_url is not None and store_url.startswith("file:"):
        path = Path(store_url[len("file:") :])
        store_url = f"file:{path.resolve()}"
    overrides: dict[str, Any] = {
        "server_listen": tuple(args.listen) if args.listen else None,
        "server_mode": args.mode,
        "server_inject_bug": args.inject_bug,
        "server_watchdog_threshold": args.watchdog_threshold,
        "store_url": store_url,
        "store_reload_interval": args.reload_interval,
        "store_state_file": args.state_file.resolve() if args.state_file else None,
        "admin_listen": args.admin,
        "log_level": args.log_level,
        "log_format": args.log_format,
        "log_queries": args.log_queries,
    }
    return config.with_overrides(**overrides)


def _worker_config(config: Config, index: int) -> Config:
    """Worker ``index`` of a group: the same DNS ports, admin port + index."""
    admin = config.admin
    if index and admin.listen is not None and admin.listen[1] != 0:
        host, port = admin.listen
        config = replace(config, admin=replace(admin, listen=(host, port + index)))
    return config


def _tag_logs(tag: str) -> None:
    """Prefix every log line of this process with ``tag`` (which worker said it)."""

    def add_tag(record: logging.LogRecord) -> bool:
        record.msg = f"{tag}: {record.msg}"
        return True

    for handler in logging.getLogger().handlers:
        handler.addFilter(add_tag)


def _check_ports_free(addresses: Sequence[tuple[str, int]]) -> None:
    """Fail now if another server (even another worker group) holds one of our ports.

    Workers bind with SO_REUSEPORT, which would let a second group share a port
    with the first and split its queries; a plain bind here refuses that.
    """
    for host, port in addresses:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(family, kind) as probe:
                probe.bind((host, port))


def _serve_args_without_workers(argv: Sequence[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            out.append(arg)
    return out


def _serve(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from cowdns.admin import AdminListenError
    from cowdns.app import serve
    from cowdns.logs import setup_logging

    config = _serve_config(args)
    setup_logging(config.log.level, config.log.format, sys.stderr)
    if args.workers < 1:
        raise ConfigError("--workers", f"must be at least 1, got {args.workers}")
    if args.workers > 1 and args.worker_index is None:
        if any(port == 0 for _host, port in config.server.listen):
            raise ConfigError(
                "--workers", "needs fixed ports; port 0 picks a different one per worker"
            )
        try:
            _check_ports_free(config.server.listen)
        except OSError as exc:
            listen = ", ".join(f"{h}:{p}" for h, p in config.server.listen)
            print(f"cowdns: cannot listen on {listen}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        from cowdns.workers import supervise

        return trio.run(supervise, _serve_args_without_workers(argv[1:]), args.workers)
    worker = args.worker_index
    if worker is not None:
        config = _worker_config(config, worker)
        _tag_logs(f"worker {worker}")
    try:
        trio.run(
            lambda: serve(
                config,
                handle_signals=True,
                announce=not worker,
                reuse_port=worker is not None,
            )
        )
    except OSError as exc:
        listen = ", ".join(f"{h}:{p}" for h, p in config.server.listen)
        if isinstance(exc, AdminListenError):
            listen = f"{exc.where} (admin)"
        print(f"cowdns: cannot listen on {listen}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def _key_lines(path: Path) -> dict[str, int]:
    """Line of each top-level key in a JSON table file, for messages a person can act on."""
    lines: dict[str, int] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return lines
    for number, line in enumerate(text.splitlines(), 1):
        for match in re.finditer(r'"((?:[^"\\]|\\.)*)"\s*:', line):
            try:
                key = json.loads(f'"{match.group(1)}"')
            except ValueError:
                continue
            lines.setdefault(key, number)
    return lines


async def _validate(config: Config, table: Path | None) -> tuple[int, list[str]]:
    """Names that load and one message per problem."""
    from cowdns.store.sources.file import FileSource
    from cowdns.store.sources.urls import open_source
    from cowdns.store.table import build_table

    source = (
        FileSource(table) if table is not None else open_source(config.store.url, config.base_dir)
    )
    try:
        fetched = await source.fetch()
    finally:
        await source.aclose()
    assert fetched is not None
    builder = await build_table(config.zones, fetched.entries, trio.lowlevel.checkpoint)
    where = table if table is not None else getattr(source, "path", None)
    lines = _key_lines(where) if isinstance(where, Path) else {}
    problems = []
    for error in builder.rejected:
        line = lines.get(error.key)
        prefix = f"{where}:{line}: " if line is not None else f"{source.description}: "
        problems.append(f"{prefix}{error}")
    return len(builder.entries), problems


async def _check(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    print(f"{args.config}: ok, {len(config.zones)} zone(s)")
    names, problems = await _validate(config, args.table)
    for problem in problems:
        print(problem)
    status = "ok" if not problems else f"{len(problems)} problem(s)"
    print(f"table: {names} name(s) load, {status}")
    return 1 if problems else 0


async def _push(args: argparse.Namespace) -> int:
    from cowdns.store.push import push_table
    from cowdns.store.sources.etcd import EtcdSource
    from cowdns.store.sources.urls import open_source

    try:
        source = open_source(args.store, Path.cwd())
    except ConfigError as exc:
        raise ConfigError("--store", exc.message) from None
    if not isinstance(source, EtcdSource):
        await source.aclose()
        raise ConfigError("--store", "push needs an etcd://HOST:PORT/PREFIX URL")
    try:
        if args.config is not None:
            _names, problems = await _validate(load_config(args.config), args.file)
            for problem in problems:
                print(problem, file=sys.stderr)
            if problems and not args.force:
                print(
                    f"cowdns: {len(problems)} problem(s) in {args.file}; nothing pushed"
                    " (--force pushes anyway; cowdns skips invalid names when it loads)",
                    file=sys.stderr,
                )
                return 1
        report = await push_table(args.file, source)
    finally:
        await source.aclose()
    lines = list(report.lines())
    print(f"{source.description}: {lines[0]}")
    if not args.quiet:
        for line in lines[1:]:
            print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cowdns`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["lockcheck"]:
        # lockcheck owns its whole command line (its own --help, --json, paths).
        from cowdns import lockcheck

        try:
            return lockcheck.main(argv[1:])
        except BrokenPipeError:
            # The reader went away (``| head``): not an error of ours to report.
            sys.stderr.close()
            return 0
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args, argv)
        if args.command == "check":
            return trio.run(_check, args)
        if args.command == "push":
            return trio.run(_push, args)
    except ConfigError as exc:
        print(f"cowdns: config error: {exc}", file=sys.stderr)
        return 2
    except CowdnsError as exc:
        print(f"cowdns: {exc}", file=sys.stderr)
        return 1
    raise AssertionError(args.command)


def run() -> None:
    """Console-script wrapper: exit with :func:`main`'s status."""
    raise SystemExit(main())
