"""The ``cowdns`` command: serve, check, push, lockcheck."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from cowdns import __version__
from cowdns.config import BUGS, MODES, Config, load_config, parse_listen
from cowdns.errors import ConfigError, CowdnsError

__all__ = ["main", "run"]


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def _listen(text: str) -> tuple[str, int]:
    try:
        return parse_listen(text, "--listen")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


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
        "--reload-interval", type=_positive, metavar="SECONDS", help="periodic reload interval"
    )
    serve.add_argument("--state-file", type=Path, help="where the last good table is kept")
    serve.add_argument(
        "--inject-bug", choices=BUGS, help="reproduce the original locked-mode deadlock"
    )
    serve.add_argument(
        "--watchdog-threshold",
        type=_positive,
        metavar="SECONDS",
        help="locked mode: report a writer waiting longer than this",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log verbosity (default: info)",
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
    }
    return config.with_overrides(**overrides)


def _serve(args: argparse.Namespace) -> int:
    from cowdns.app import serve

    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    config = _serve_config(args)
    try:
        trio.run(lambda: serve(config, handle_signals=True, announce=True))
    except OSError as exc:
        listen = ", ".join(f"{h}:{p}" for h, p in config.server.listen)
        print(f"cowdns: cannot listen on {listen}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cowdns`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["lockcheck"]:
        # lockcheck owns its whole command line (its own --help, --json, paths).
        from cowdns import lockcheck

        return lockcheck.main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
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
