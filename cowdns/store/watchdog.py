"""Watchdog for an :class:`~cowdns.store.rwlock.RWLock`: say who blocks a waiting writer.

A writer that waits long on a write-biased lock means every new reader waits
too, so the server has stopped answering.  The watchdog notices, logs one error
per incident naming every holder (task, code location, how long ago) and marks
a :class:`LockHealth` unhealthy, so the health endpoint fails and an operator
knows where to look.  The incident ends when a writer gets in (or the lock
falls completely idle); the next incident is reported afresh.

It polls rather than hooking the lock: the lock's hot path stays free of timers,
and a stuck lock changes slowly, so a poll every quarter threshold is plenty.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

import trio

from cowdns.store.rwlock import RWLock, RWLockStatistics

__all__ = ["LockHealth", "describe_blockers", "watch_lock"]

log = logging.getLogger("cowdns.lock")

# Holders listed in one report; a leak is the oldest hold, listed first.
MAX_LISTED = 20


@dataclass
class LockHealth:
    """Health of one lock as the watchdog last saw it; read by health checks."""

    healthy: bool = True
    reason: str = ""
    trips: int = 0
    """Incidents so far (each logged once)."""


def describe_blockers(stats: RWLockStatistics, lock_name: str, now: float) -> str:
    """One line naming the waiting writer's age and every holder, oldest first."""
    waited = 0.0 if stats.writer_waiting_since is None else now - stats.writer_waiting_since
    holders = sorted(stats.holders, key=lambda holder: holder.since)
    listed = "; ".join(holder.describe(now) for holder in holders[:MAX_LISTED])
    more = f"; and {len(holders) - MAX_LISTED} more" if len(holders) > MAX_LISTED else ""
    return (
        f"writer has waited {waited:.1f}s for lock {lock_name!r}"
        f" ({stats.readers_waiting} readers queued behind it);"
        f" {len(holders)} holder(s): {listed or 'none'}{more}"
    )


async def watch_lock(
    lock: RWLock,
    threshold: float,
    *,
    health: LockHealth | None = None,
    on_trip: Callable[[str], None] | None = None,
    poll: float | None = None,
    task_status: trio.TaskStatus[LockHealth] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Watch ``lock`` forever; start with ``health = await nursery.start(watch_lock, ...)``.

    When a writer has waited at least ``threshold`` seconds, log one error on the
    ``cowdns.lock`` logger, set ``health.healthy = False`` with the same text in
    ``health.reason``, and call ``on_trip(text)``.  Health comes back when a
    writer is granted the lock, or when the lock is idle.  ``poll`` defaults to
    a quarter of ``threshold``.
    """
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, not {threshold!r}")
    health = LockHealth() if health is None else health
    interval = threshold / 4 if poll is None else poll
    # write_grants when the current incident started, or None when there is none.
    incident: int | None = None
    task_status.started(health)
    while True:
        stats = lock.statistics()
        now = trio.current_time()
        if incident is not None:
            idle = not stats.readers and not stats.writer_held and not stats.writers_waiting
            if stats.write_grants > incident or idle:
                incident = None
                health.healthy = True
                health.reason = ""
                log.info("lock %r: a writer got in; healthy again", lock.name)
        elif (
            stats.writer_waiting_since is not None and now - stats.writer_waiting_since >= threshold
        ):
            incident = stats.write_grants
            message = describe_blockers(stats, lock.name, now)
            health.healthy = False
            health.reason = message
            health.trips += 1
            log.error("%s", message)
            if on_trip is not None:
                on_trip(message)
        await trio.sleep(interval)
