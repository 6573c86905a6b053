"""``cowdns lockcheck``: find functions that can leave a lock acquired.

A static checker built on :mod:`ast`; it imports and runs nothing it reads.
For every function it lists each lock acquire and release (trio and threading
``acquire``/``acquire_nowait``/``release``, the read/write lock's
``acquire_read``/``release_read``/``acquire_write``/``release_write``, and
``with``/``async with`` uses such as ``async with self._lock:`` or
``async with table.lock.read():``) and flags each acquire that some path can
carry out of the function still held.

Design: a path-sensitive walk over the statements of one function keeps a set
of *states*; a state is the set of locks held on one path.  A lock is named by
the source text of its receiver plus its side (``self.lock`` read,
``self.lock`` write and ``self.lock`` itself are three different locks), so
``acquire_write`` is only undone by ``release_write`` on the same text.  Every
``return``, every ``raise`` and falling off the end is an exit; an exit whose
state still holds a lock is a finding on that lock's acquire line.  Branches
fork the state set, loops iterate to a fixed point (states are finite),
``break``/``continue`` and exits pass through ``finally`` bodies, and an
``except`` handler starts from every state seen before a statement of its
``try`` body, which is where an exception can come from.

Deliberately not modelled:

* A call that may raise is not a leak path by itself: otherwise every acquire
  not followed by ``try:``/``finally`` would be flagged, which is most correct
  code.  Only explicit ``raise``/``return``, and the end of the function, are.
* Exception types: a ``raise`` inside a ``try`` with handlers is assumed
  caught by them; ``with`` blocks are assumed not to swallow exceptions.
* Aliasing: ``lk = self.lock; lk.release()`` releases a lock named ``lk``.
* Counting: a re-entrant lock acquired twice is released by one release.
* Ownership across functions: an ``acquire`` whose release lives elsewhere
  (``__aenter__``/``__aexit__``, a lock class built on an inner lock) is
  flagged.  No names are special-cased; such deliberate cases carry
  ``# lockcheck: ignore`` (optionally ``ignore[reason]``) on the acquire line or
  the ``def`` line and are listed as acknowledged.
* Context-manager uses are listed but never flagged; module-level code and
  lambdas are not analysed; a nested ``def`` is analysed as its own function.

Conditional acquires are understood in two forms: ``if lock.acquire(...):``
(or ``if not ...``) and ``ok = lock.acquire(...)`` followed by ``if ok:`` or
``if not ok:``.

Output: a listing per file and function, then one line per finding
(``path.py:12: in Table.lookup(): read lock on self.lock acquired here may stay
held: return at line 15 without release_read``); ``--quiet`` keeps only the
unacknowledged findings; ``--json`` prints a list of objects with ``file``,
``function``, ``line`` (of the acquire), ``lock`` (receiver text), ``kind``
(``lock``, ``read`` or ``write``), ``message``, ``acknowledged``, ``reason`` and
``exits`` (each ``{"kind": "return"|"raise"|"end", "line": N}``).

Exit status: 0 clean, 1 when an unacknowledged finding exists, 2 when an input
cannot be read or parsed.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import os
import re
import sys
import tokenize
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, TextIO

__all__ = [
    "FileReport",
    "Finding",
    "FunctionReport",
    "LockEvent",
    "UnreadableInput",
    "check_file",
    "check_source",
    "iter_python_files",
    "main",
]

Side = Literal["lock", "read", "write"]
ExitKind = Literal["return", "raise", "end"]

# method name -> (side, is_acquire)
_METHODS: dict[str, tuple[Side, bool]] = {
    "acquire": ("lock", True),
    "acquire_nowait": ("lock", True),
    "release": ("lock", False),
    "acquire_read": ("read", True),
    "release_read": ("read", False),
    "acquire_write": ("write", True),
    "release_write": ("write", False),
}
_RELEASE_NAME: dict[Side, str] = {
    "lock": "release",
    "read": "release_read",
    "write": "release_write",
}
_SIDE_TEXT: dict[Side, str] = {"lock": "lock", "read": "read lock", "write": "write lock"}

# `with X:` counts as a lock when X's last name says so (`self._lock`, `table_lock`,
# `mutex`, `cond`), not when it merely contains the letters (`block`, `clock`).
_LOCKISH_NAME = re.compile(
    r"(?i:(?:^|_)(?:r|w|rw|read|write)?(?:lock|mutex|cond|condition|sem|semaphore|limiter)s?$)"
    r"|(?:Lock|Mutex)s?$"
)
_MARKER = re.compile(r"#\s*lockcheck:\s*ignore\b(?:\[([^\]]*)\])?\s*(.*)$")

_SKIPPED_DIRS = frozenset({"__pycache__", "node_modules"})


class UnreadableInput(Exception):
    """A path could not be read or parsed; ``str()`` is one line for the user."""


@dataclass(frozen=True)
class LockEvent:
    """One acquire, release or ``with`` use of a lock, as written in the source."""

    line: int
    action: str  # "acquire_read", "release", "with", "async with", ...
    lock: str  # receiver text: "self.lock"
    side: Side
    until: int | None = None  # last line of a with block


@dataclass(frozen=True)
class Finding:
    """An acquire that some path can carry out of its function still held."""

    file: str
    function: str
    line: int
    lock: str
    kind: Side
    message: str
    acknowledged: bool = False
    reason: str | None = None
    exits: tuple[tuple[ExitKind, int], ...] = ()

    def to_json(self) -> dict[str, object]:
        """The ``--json`` object for this finding."""
        return {
            "file": self.file,
            "function": self.function,
            "line": self.line,
            "lock": self.lock,
            "kind": self.kind,
            "message": self.message,
            "acknowledged": self.acknowledged,
            "reason": self.reason,
            "exits": [{"kind": kind, "line": line} for kind, line in self.exits],
        }

    def __str__(self) -> str:
        ack = ""
        if self.acknowledged:
            ack = f"acknowledged ({self.reason}): " if self.reason else "acknowledged: "
        return f"{self.file}:{self.line}: in {self.function}(): {ack}{self.message}"


@dataclass(frozen=True)
class FunctionReport:
    """The lock events and findings of one function (nested defs are separate)."""

    name: str
    line: int
    events: tuple[LockEvent, ...]
    findings: tuple[Finding, ...]


@dataclass(frozen=True)
class FileReport:
    """Every function of one file that touches a lock."""

    path: str
    functions: tuple[FunctionReport, ...]

    @property
    def findings(self) -> list[Finding]:
        """All findings of the file, acknowledged ones included, in line order."""
        return sorted(
            (f for fn in self.functions for f in fn.findings), key=lambda f: (f.line, f.lock)
        )


# --- the flow analysis ------------------------------------------------------


class _Key(NamedTuple):
    lock: str
    side: Side


class _Held(NamedTuple):
    key: _Key
    line: int  # where it was acquired
    flag: str | None  # held only if this variable is true (`ok = lock.acquire(...)`)


_State = frozenset[_Held]


class _Exit(NamedTuple):
    state: _State
    line: int
    kind: ExitKind


@dataclass
class _Flow:
    normal: set[_State] = field(default_factory=set)
    breaks: set[_State] = field(default_factory=set)
    continues: set[_State] = field(default_factory=set)
    exits: set[_Exit] = field(default_factory=set)
    seen: set[_State] = field(default_factory=set)  # pre-states: where exceptions start

    def absorb(self, other: _Flow) -> None:
        """Take other's abrupt outcomes (not its normal one)."""
        self.breaks |= other.breaks
        self.continues |= other.continues
        self.exits |= other.exits
        self.seen |= other.seen


def _lock_call(node: ast.AST) -> tuple[ast.Call, _Key, bool] | None:
    """(call, key, is_acquire) when node is a lock method call, awaited or not."""
    if isinstance(node, ast.Await):
        node = node.value
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return None
    method = _METHODS.get(node.func.attr)
    if method is None:
        return None
    side, is_acquire = method
    # `pool.release(conn)` is not a lock: lock releases take no arguments.
    if not is_acquire and (node.args or node.keywords):
        return None
    return node, _Key(ast.unparse(node.func.value), side), is_acquire


def _scope_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """node and its descendants, not entering nested functions, lambdas or classes."""
    yield node
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        yield from _scope_nodes(child)


def _calls_in(exprs: Iterable[ast.AST | None]) -> list[tuple[ast.Call, _Key, bool]]:
    found: list[tuple[ast.Call, _Key, bool]] = []
    for expr in exprs:
        if expr is None:
            continue
        for node in _scope_nodes(expr):
            hit = _lock_call(node)
            if hit is not None and not isinstance(node, ast.Await):
                found.append(hit)
    found.sort(key=lambda hit: (hit[0].lineno, hit[0].col_offset))
    return found


def _with_lock(item: ast.withitem) -> _Key | None:
    expr = item.context_expr
    if (
        isinstance(expr, ast.Call)
        and isinstance(expr.func, ast.Attribute)
        and expr.func.attr in ("read", "write")
        and not expr.args
        and not expr.keywords
    ):
        side: Side = "read" if expr.func.attr == "read" else "write"
        return _Key(ast.unparse(expr.func.value), side)
    last = expr.attr if isinstance(expr, ast.Attribute) else getattr(expr, "id", None)
    if isinstance(last, str) and _LOCKISH_NAME.search(last.lstrip("_")):
        return _Key(ast.unparse(expr), "lock")
    return None


def _is_true(expr: ast.expr) -> bool:
    return isinstance(expr, ast.Constant) and bool(expr.value)


def _is_irrefutable(case: ast.match_case) -> bool:
    pattern = case.pattern
    return case.guard is None and isinstance(pattern, ast.MatchAs) and pattern.pattern is None


class _Walker:
    """Runs the state-set walk over one function body."""

    def __init__(self) -> None:
        # releases of a lock not held on that path: (line, key), for hints
        self.unmatched: set[tuple[int, _Key]] = set()

    # expressions

    def _apply(self, calls: list[tuple[ast.Call, _Key, bool]], states: set[_State]) -> set[_State]:
        for call, key, is_acquire in calls:
            after: set[_State] = set()
            for state in states:
                if is_acquire:
                    after.add(state | {_Held(key, call.lineno, None)})
                    continue
                kept = frozenset(h for h in state if h.key != key)
                if len(kept) == len(state):
                    self.unmatched.add((call.lineno, key))
                after.add(kept)
            states = after
        return states

    def _exprs(self, exprs: Iterable[ast.AST | None], states: set[_State]) -> set[_State]:
        return self._apply(_calls_in(exprs), states)

    def _split(self, test: ast.expr, states: set[_State]) -> tuple[set[_State], set[_State]]:
        """States in which test is true, and in which it is false."""
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            false, true = self._split(test.operand, states)
            return true, false
        hit = _lock_call(test)
        if hit is not None and hit[2]:
            call, key, _ = hit
            before = self._exprs([*call.args, *(k.value for k in call.keywords)], states)
            return {s | {_Held(key, call.lineno, None)} for s in before}, before
        if isinstance(test, ast.Name):
            name = test.id
            true = {
                frozenset(h._replace(flag=None) if h.flag == name else h for h in s) for s in states
            }
            false = {frozenset(h for h in s if h.flag != name) for s in states}
            return true, false
        states = self._exprs([test], states)
        return states, states

    # statements

    def block(self, stmts: Sequence[ast.stmt], states: set[_State]) -> _Flow:
        flow = _Flow()
        current = set(states)
        for stmt in stmts:
            if not current:
                break  # unreachable; still listed, not walked
            step = self.stmt(stmt, current)
            flow.absorb(step)
            current = step.normal
        flow.normal = current
        return flow

    def stmt(self, node: ast.stmt, states: set[_State]) -> _Flow:
        flow = self._stmt(node, states)
        # An exception from this statement starts in the state before it, except
        # that a failing release (of a lock not held) leaves nothing to release.
        releases = isinstance(node, ast.Expr) and any(not hit[2] for hit in _calls_in([node]))
        flow.seen |= flow.normal if releases else states
        return flow

    def _stmt(self, node: ast.stmt, states: set[_State]) -> _Flow:
        if isinstance(node, ast.Return | ast.Raise):
            parts = [node.value] if isinstance(node, ast.Return) else [node.exc, node.cause]
            kind: ExitKind = "return" if isinstance(node, ast.Return) else "raise"
            after = self._exprs(parts, states)
            return _Flow(exits={_Exit(s, node.lineno, kind) for s in after})
        if isinstance(node, ast.Break):
            return _Flow(breaks=set(states))
        if isinstance(node, ast.Continue):
            return _Flow(continues=set(states))
        if isinstance(node, ast.If):
            true, false = self._split(node.test, states)
            then, other = self.block(node.body, true), self.block(node.orelse, false)
            flow = _Flow(normal=then.normal | other.normal)
            flow.absorb(then)
            flow.absorb(other)
            return flow
        if isinstance(node, ast.For | ast.AsyncFor | ast.While):
            return self._loop(node, states)
        if isinstance(node, ast.With | ast.AsyncWith):
            exprs = [i.context_expr for i in node.items if _with_lock(i) is None]
            return self.block(node.body, self._exprs(exprs, states))
        if isinstance(node, ast.Try | ast.TryStar):
            return self._try(node, states)
        if isinstance(node, ast.Match):
            states = self._exprs([node.subject], states)
            flow = _Flow()
            for case in node.cases:
                arm = self.block(case.body, states)
                flow.normal |= arm.normal
                flow.absorb(arm)
            if not any(_is_irrefutable(case) for case in node.cases):
                flow.normal |= states
            return flow
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            return _Flow(normal=set(states))
        return _Flow(normal=self._simple(node, states))

    def _simple(self, node: ast.stmt, states: set[_State]) -> set[_State]:
        target: ast.expr | None = None
        value: ast.expr | None = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        hit = _lock_call(value) if value is not None else None
        if isinstance(target, ast.Name) and hit is not None and hit[2]:
            call, key, _ = hit
            before = self._exprs([*call.args, *(k.value for k in call.keywords)], states)
            return {s | {_Held(key, call.lineno, target.id)} for s in before}
        return self._exprs([node], states)

    def _loop(self, node: ast.For | ast.AsyncFor | ast.While, states: set[_State]) -> _Flow:
        flow = _Flow()
        if not isinstance(node, ast.While):
            states = self._exprs([node.iter], states)
        entry = set(states)
        done: set[_State] = set()
        while True:
            if isinstance(node, ast.While):
                run, done = self._split(node.test, entry)
            else:
                run = done = entry
            body = self.block(node.body, run)
            flow.absorb(body)
            grown = entry | body.normal | body.continues
            if grown == entry:
                break
            entry = grown
        if isinstance(node, ast.While) and _is_true(node.test):
            done = set()
        orelse = self.block(node.orelse, done)
        flow.exits |= orelse.exits
        flow.seen |= orelse.seen
        # break/continue inside the else clause belong to an enclosing loop
        flow.normal = orelse.normal | flow.breaks
        flow.breaks, flow.continues = orelse.breaks, orelse.continues
        return flow

    def _try(self, node: ast.Try | ast.TryStar, states: set[_State]) -> _Flow:
        body = self.block(node.body, states)
        flow = _Flow(breaks=body.breaks, continues=body.continues, seen=body.seen)
        if node.handlers:
            caught = {e.state for e in body.exits if e.kind == "raise"}
            flow.exits = {e for e in body.exits if e.kind != "raise"}
            for handler in node.handlers:
                arm = self.block(handler.body, body.seen | caught)
                flow.normal |= arm.normal
                flow.absorb(arm)
        else:
            flow.exits = set(body.exits)
        orelse = self.block(node.orelse, body.normal)
        flow.normal |= orelse.normal
        flow.absorb(orelse)
        if not node.finalbody:
            return flow
        cache: dict[_State, _Flow] = {}

        def through(state: _State) -> set[_State]:
            if state not in cache:
                cache[state] = self.block(node.finalbody, {state})
            return cache[state].normal

        # an exception escaping the try runs the finally body before it propagates
        done = _Flow(seen={s for st in flow.seen for s in through(st)})
        done.normal = {s for st in flow.normal for s in through(st)}
        done.breaks = {s for st in flow.breaks for s in through(st)}
        done.continues = {s for st in flow.continues for s in through(st)}
        done.exits = {e._replace(state=s) for e in flow.exits for s in through(e.state)}
        for fin in cache.values():
            done.absorb(fin)
        return done


# --- per function and per file ------------------------------------------------


def _markers(source: str) -> dict[int, str]:
    """line -> reason ("" when none) of each `# lockcheck: ignore` comment."""
    found: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                match = _MARKER.search(tok.string)
                if match:
                    found[tok.start[0]] = (match.group(1) or match.group(2) or "").strip()
    except (tokenize.TokenError, SyntaxError):
        pass  # ast.parse accepted it; a tokenizer quirk only loses markers
    return found


def _events(func: ast.FunctionDef | ast.AsyncFunctionDef) -> list[LockEvent]:
    events: list[LockEvent] = []
    for stmt in func.body:
        for node in _scope_nodes(stmt):
            hit = _lock_call(node)
            if hit is not None and not isinstance(node, ast.Await):
                call, key, _ = hit
                assert isinstance(call.func, ast.Attribute)
                events.append(LockEvent(call.lineno, call.func.attr, key.lock, key.side))
            if isinstance(node, ast.With | ast.AsyncWith):
                action = "async with" if isinstance(node, ast.AsyncWith) else "with"
                for item in node.items:
                    cm = _with_lock(item)
                    if cm is not None:
                        line = item.context_expr.lineno
                        events.append(LockEvent(line, action, cm.lock, cm.side, node.end_lineno))
    events.sort(key=lambda e: e.line)
    return events


def _describe(kind: ExitKind, line: int) -> str:
    return f"end of function at line {line}" if kind == "end" else f"{kind} at line {line}"


def _check_function(
    func: ast.FunctionDef | ast.AsyncFunctionDef, name: str, path: str, markers: dict[int, str]
) -> FunctionReport:
    walker = _Walker()
    flow = walker.block(func.body, {frozenset()})
    end = func.end_lineno or func.lineno
    exits = flow.exits | {_Exit(s, end, "end") for s in flow.normal}
    leaks: dict[tuple[_Key, int], set[tuple[ExitKind, int]]] = {}
    for exit_ in exits:
        for held in exit_.state:
            leaks.setdefault((held.key, held.line), set()).add((exit_.kind, exit_.line))
    header = range(func.lineno, max(func.lineno + 1, func.body[0].lineno))
    findings: list[Finding] = []
    for (key, line), paths in sorted(leaks.items(), key=lambda item: (item[0][1], item[0][0])):
        ordered = sorted(paths, key=lambda p: (p[1], p[0] == "end", p[0]))
        release = _RELEASE_NAME[key.side]
        message = (
            f"{_SIDE_TEXT[key.side]} on {key.lock} acquired here may stay held: "
            f"{_describe(*ordered[0])} without {release}"
        )
        if len(ordered) > 1:
            message += " (also " + ", ".join(_describe(*p) for p in ordered[1:]) + ")"
        others = sorted(
            (ln, k)
            for ln, k in walker.unmatched
            if k != key and (k.lock == key.lock or k.side == key.side)
        )
        for ln, k in others:
            message += (
                f"; line {ln} releases the {_SIDE_TEXT[k.side]} on {k.lock}, a different lock"
            )
        marked = next((ln for ln in (line, *header) if ln in markers), None)
        findings.append(
            Finding(
                file=path,
                function=name,
                line=line,
                lock=key.lock,
                kind=key.side,
                message=message,
                acknowledged=marked is not None,
                reason=(markers[marked] or None) if marked is not None else None,
                exits=tuple(ordered),
            )
        )
    return FunctionReport(name, func.lineno, tuple(_events(func)), tuple(findings))


def _functions(
    body: Iterable[ast.stmt], prefix: str
) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    for stmt in _all_stmts(body):
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            yield prefix + stmt.name, stmt
            yield from _functions(stmt.body, f"{prefix}{stmt.name}.<locals>.")
        elif isinstance(stmt, ast.ClassDef):
            yield from _functions(stmt.body, f"{prefix}{stmt.name}.")


def _all_stmts(body: Iterable[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements of one scope at any block depth (inside if/for/try...), not nested defs."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        for name in ("body", "orelse", "finalbody"):
            yield from _all_stmts(getattr(stmt, name, ()))
        for handler in getattr(stmt, "handlers", ()):
            yield from _all_stmts(handler.body)
        for case in getattr(stmt, "cases", ()):
            yield from _all_stmts(case.body)


def check_source(source: str, path: str = "<string>") -> FileReport:
    """Check one module's source text; raises SyntaxError if it does not parse."""
    tree = ast.parse(source, filename=path)
    markers = _markers(source)
    reports = []
    for name, func in _functions(tree.body, ""):
        report = _check_function(func, name, path, markers)
        if report.events or report.findings:
            reports.append(report)
    reports.sort(key=lambda r: r.line)
    return FileReport(path, tuple(reports))


def check_file(path: str | os.PathLike[str]) -> FileReport:
    """Check one file; raises UnreadableInput with a one-line reason."""
    shown = os.fspath(path)
    try:
        with tokenize.open(shown) as fh:  # honours a coding: declaration
            source = fh.read()
    except OSError as exc:
        reason = f"[Errno {exc.errno}] {exc.strerror}" if exc.errno else str(exc)
        raise UnreadableInput(f"cannot read {shown}: {reason}") from exc
    except (SyntaxError, ValueError) as exc:  # bad coding declaration, undecodable bytes
        raise UnreadableInput(f"cannot read {shown}: {exc}") from exc
    try:
        return check_source(source, shown)
    except SyntaxError as exc:
        where = f"{shown}:{exc.lineno}" if exc.lineno else shown
        raise UnreadableInput(f"cannot parse {where}: {exc.msg}") from exc
    except ValueError as exc:  # source code string cannot contain null bytes
        raise UnreadableInput(f"cannot parse {shown}: {exc}") from exc


def iter_python_files(path: str | os.PathLike[str]) -> Iterator[str]:
    """path itself if it is a file, else every *.py below it (hidden dirs skipped), sorted.

    Raises UnreadableInput when path does not exist.
    """
    shown = os.fspath(path)
    if os.path.isfile(shown):
        yield shown
        return
    if not os.path.isdir(shown):
        raise UnreadableInput(f"cannot read {shown}: [Errno 2] No such file or directory")
    for root, dirs, files in os.walk(shown):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIPPED_DIRS)
        for name in sorted(files):
            if name.endswith(".py"):
                yield os.path.join(root, name)


# --- output ------------------------------------------------------------------


def _print_listing(report: FileReport, out: TextIO) -> None:
    print(report.path, file=out)
    for fn in report.functions:
        print(f"  {fn.name}() line {fn.line}", file=out)
        flagged = {f.line: f.acknowledged for f in fn.findings}
        for ev in fn.events:
            with_cm = "with" in ev.action and ev.side != "lock"
            lock = f"{ev.lock}.{ev.side}()" if with_cm else ev.lock
            note = f"  (to line {ev.until})" if ev.until is not None else ""
            if ev.line in flagged and "with" not in ev.action:
                note += "  [acknowledged]" if flagged[ev.line] else "  [may stay held]"
            print(f"    {ev.line:>5}  {ev.action:<15} {lock}{note}", file=out)


def main(argv: list[str]) -> int:
    """Run ``cowdns lockcheck``; returns the exit status (0 clean, 1 findings, 2 unreadable)."""
    parser = argparse.ArgumentParser(
        prog="cowdns lockcheck",
        description="List lock acquires/releases per function and flag paths that leave "
        "a lock held.  Mark deliberate cases with '# lockcheck: ignore[reason]' on the "
        "acquire or def line.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="Python files or folders")
    parser.add_argument("--json", action="store_true", help="print findings as a JSON list")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="print only unacknowledged findings"
    )
    args = parser.parse_args(argv)

    reports: list[FileReport] = []
    unreadable = False
    for arg in args.paths:
        try:
            for file in iter_python_files(arg):
                try:
                    reports.append(check_file(file))
                except UnreadableInput as exc:
                    print(f"cowdns lockcheck: {exc}", file=sys.stderr)
                    unreadable = True
        except UnreadableInput as exc:
            print(f"cowdns lockcheck: {exc}", file=sys.stderr)
            unreadable = True

    findings = [f for r in reports for f in r.findings]
    open_findings = [f for f in findings if not f.acknowledged]
    out = sys.stdout
    if args.json:
        json.dump([f.to_json() for f in findings], out, indent=2)
        out.write("\n")
    elif args.quiet:
        for finding in open_findings:
            print(finding, file=out)
    else:
        for report in reports:
            if report.functions:
                _print_listing(report, out)
        if findings:
            print(file=out)
        for finding in findings:
            print(finding, file=out)
        functions = sum(len(r.functions) for r in reports)
        acked = len(findings) - len(open_findings)
        print(
            f"{len(reports)} file(s), {functions} function(s) using locks, "
            f"{len(open_findings)} finding(s), {acked} acknowledged",
            file=out,
        )
    if unreadable:
        return 2
    return 1 if open_findings else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
