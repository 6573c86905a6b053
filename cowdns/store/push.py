"""``cowdns push``: make the keys under an etcd prefix equal a table file.

Each name of the file becomes the key ``<prefix><name>`` with the entry's
value as compact JSON; keys under the prefix that the file no longer has are
deleted; keys whose stored bytes already equal the new value are not touched
(so an unchanged table costs no revision and wakes no watcher).

Atomicity: etcd caps the operations of one transaction (``--max-txn-ops``,
128 by default).  A push that fits is ONE transaction, guarded by a
compare-and-swap on the whole prefix: it applies only if no key under the
prefix changed since we read it, otherwise we read again and recompute (a
concurrent writer never has its change silently overwritten by a stale diff).
A bigger push is a sequence of transactions and NOT atomic: watchers see the
intermediate states.  Puts go first and deletes last, so every intermediate
state holds every name that the old and the new table share, and no
intermediate state is smaller than the old table (the reloader's shrink guard
never fires because of a push).  Each transaction compares the keys it
writes against what we read (a prefix-wide compare costs etcd a scan of the
prefix per transaction, quadratic over a big push), so a concurrent writer of
one of those keys stops the push with an error instead of being overwritten;
running the push again finishes it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

from cowdns.errors import SourceError
from cowdns.store.sources.etcd import EtcdSource, RawPrefix
from cowdns.store.sources.file import load_json_object

__all__ = ["DEFAULT_MAX_TXN_OPS", "PushReport", "push_table"]

DEFAULT_MAX_TXN_OPS = 128

# How often a one-transaction push re-reads and retries when someone else wrote
# under the prefix between our read and our transaction.
_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class PushReport:
    """What a push changed; names are the file's keys (without the prefix)."""

    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    unchanged: int
    revision: int
    transactions: int

    @property
    def atomic(self) -> bool:
        """Whether the whole push was one transaction (or no change at all)."""
        return self.transactions <= 1

    def summary(self) -> str:
        """One line for humans: the counts and the resulting revision."""
        return (
            f"{len(self.added)} added, {len(self.changed)} changed, {len(self.removed)} removed,"
            f" {self.unchanged} unchanged; revision {self.revision}"
            f" ({self.transactions} transaction{'' if self.transactions == 1 else 's'})"
        )

    def lines(self) -> Iterator[str]:
        """The summary, then one ``+ name`` / ``~ name`` / ``- name`` line per change."""
        yield self.summary()
        for mark, names in (("+", self.added), ("~", self.changed), ("-", self.removed)):
            for name in names:
                yield f"{mark} {name}"


def _encode(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


async def push_table(
    file: Path, source: EtcdSource, *, max_ops: int = DEFAULT_MAX_TXN_OPS
) -> PushReport:
    """Replace what is under ``source``'s prefix by the table in ``file``.

    ``max_ops`` must not exceed the cluster's ``--max-txn-ops``.  Raises
    SourceError when the file cannot be read or etcd cannot be written.
    """
    if max_ops < 1:
        raise ValueError("max_ops must be positive")
    try:
        data = await trio.Path(file).read_bytes()
    except OSError as exc:
        raise SourceError(f"{file}: {exc.strerror or exc}") from None
    table = await trio.to_thread.run_sync(load_json_object, data, str(file))
    wanted = {name: _encode(value) for name, value in table.items()}

    for _attempt in range(_ATTEMPTS):
        current = await source.read_raw()
        added = tuple(name for name in wanted if name not in current.values)
        changed = tuple(
            name
            for name, value in wanted.items()
            if name in current.values and current.values[name] != value
        )
        removed = tuple(name for name in current.values if name not in wanted)
        unchanged = len(wanted) - len(added) - len(changed)
        ops = len(added) + len(changed) + len(removed)
        if ops == 0:
            return PushReport(added, changed, removed, unchanged, current.revision, 0)
        puts = [*added, *changed]
        if ops <= max_ops:
            revision = await source.write(
                {name: wanted[name] for name in puts},
                removed,
                unchanged_since=current.revision,
            )
            if revision is None:
                continue  # someone wrote meanwhile: diff again against the new state
            return PushReport(added, changed, removed, unchanged, revision, 1)
        revision, transactions = await _push_in_batches(
            source, wanted, current, puts, removed, max_ops
        )
        return PushReport(added, changed, removed, unchanged, revision, transactions)
    raise SourceError(
        f"{source.description}: the prefix kept changing during the push"
        f" ({_ATTEMPTS} attempts); nothing was written"
    )


async def _push_in_batches(
    source: EtcdSource,
    wanted: dict[str, bytes],
    current: RawPrefix,
    puts: Sequence[str],
    removed: Sequence[str],
    max_ops: int,
) -> tuple[int, int]:
    revision = current.revision
    transactions = 0
    # Puts first, deletes last: see the module docstring.
    none: Sequence[str] = ()
    batches = [(puts[i : i + max_ops], none) for i in range(0, len(puts), max_ops)]
    batches += [(none, removed[i : i + max_ops]) for i in range(0, len(removed), max_ops)]
    for batch_puts, batch_deletes in batches:
        expected = {name: current.mod_revisions.get(name, 0) for name in batch_puts}
        expected.update((name, current.mod_revisions[name]) for name in batch_deletes)
        new_revision = await source.write(
            {name: wanted[name] for name in batch_puts}, batch_deletes, expected=expected
        )
        if new_revision is None:
            raise SourceError(
                f"{source.description}: another writer changed keys of this push;"
                f" stopped after {transactions} of {len(batches)} transactions,"
                " run the push again to finish"
            )
        revision = new_revision
        transactions += 1
    return revision, transactions
