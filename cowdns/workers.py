"""``--workers N``: N server processes sharing each port through SO_REUSEPORT.

Each worker is a full ``cowdns serve`` with its own table and reloader (Python
threads would share one interpreter lock; processes scale with cores).  The
kernel spreads UDP datagrams and TCP connections over the workers.  This
supervisor forwards SIGHUP, SIGINT and SIGTERM to every worker and stops them
all as soon as one of them exits, so the group lives and dies together.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence

import trio

__all__ = ["supervise"]

log = logging.getLogger("cowdns.workers")

_FORWARDED = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM)


async def supervise(serve_args: Sequence[str], count: int) -> int:
    """Run ``count`` workers of ``cowdns serve serve_args``; the first non-zero status wins."""
    processes: list[trio.Process] = []
    status = 0
    with trio.open_signal_receiver(*_FORWARDED) as signals:
        try:
            for index in range(count):
                command = [
                    sys.executable,
                    "-m",
                    "cowdns",
                    "serve",
                    *serve_args,
                    "--worker-index",
                    str(index),
                ]
                processes.append(await trio.lowlevel.open_process(command))
            log.info("started %d workers: pids %s", count, " ".join(str(p.pid) for p in processes))
            async with trio.open_nursery() as nursery:
                stopping = False

                async def forward() -> None:
                    nonlocal stopping
                    async for signum in signals:
                        stopping = stopping or signum != signal.SIGHUP
                        for process in processes:
                            if process.returncode is None:
                                process.send_signal(signum)

                async def wait(process: trio.Process) -> None:
                    nonlocal status
                    code = await process.wait()
                    if stopping:
                        log.info("worker pid %d stopped", process.pid)
                        if all(p.returncode is not None for p in processes):
                            nursery.cancel_scope.cancel()
                        return
                    if code != 0 and status == 0:
                        status = code if code > 0 else 1
                    log.error(
                        "worker pid %d exited with status %d; stopping the others",
                        process.pid,
                        code,
                    )
                    nursery.cancel_scope.cancel()

                nursery.start_soon(forward)
                for process in processes:
                    nursery.start_soon(wait, process)
        finally:
            with trio.CancelScope(shield=True):
                for process in processes:
                    if process.returncode is None:
                        process.terminate()
                for process in processes:
                    with trio.move_on_after(5):
                        await process.wait()
                    if process.returncode is None:
                        process.kill()
                        await process.wait()
    return status
