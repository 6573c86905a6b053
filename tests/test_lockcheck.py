"""`cowdns lockcheck`: a table of good and bad snippets, then the command line.

In a snippet, every acquire that must be flagged carries ``# LEAK``; a snippet
with no marker must produce no finding at all.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from cowdns import lockcheck

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Case:
    id: str
    source: str
    functions: tuple[str, ...] = ()  # functions expected to be flagged


def _case(id: str, source: str, *functions: str) -> Case:
    return Case(id, textwrap.dedent(source), functions)


GOOD = [
    _case(
        "with-lock",
        """
        def f(self):
            with self._lock:
                return self.value
        """,
    ),
    _case(
        "async-with-read-return-in-loop",
        """
        async def lookup(self, name):
            async with self.lock.read():
                for key, ips in self.entries.items():
                    if key == name:
                        return ips
            return None
        """,
    ),
    _case(
        "async-with-write-raise",
        """
        async def put(self, name, ips):
            async with table.lock.write():
                if not ips:
                    raise ValueError(name)
                self.entries[name] = ips
        """,
    ),
    _case(
        "try-finally-acquire-before-try",
        """
        async def lookup(self, name):
            await self.lock.acquire_read()
            try:
                for key, ips in self.entries.items():
                    if key == name:
                        return ips
                raise KeyError(name)
            finally:
                self.lock.release_read()
        """,
    ),
    _case(
        "try-finally-acquire-first-inside",
        """
        def bump(self):
            try:
                self.lock.acquire_write()
                if self.frozen:
                    return False
                self.gen += 1
            finally:
                self.lock.release_write()
            return True
        """,
    ),
    _case(
        "straight-line",
        """
        def f(lock):
            lock.acquire()
            x = compute()
            lock.release()
            return x
        """,
    ),
    _case(
        "release-on-every-branch",
        """
        def f(self, x):
            self.lock.acquire()
            if x == 1:
                self.lock.release()
                return "one"
            elif x == 2:
                self.lock.release()
            else:
                self.lock.release()
                raise ValueError(x)
            return "two"
        """,
    ),
    _case(
        "break-then-release",
        """
        def f(self, items):
            self.lock.acquire()
            found = None
            for item in items:
                if item.ok:
                    found = item
                    break
            self.lock.release()
            return found
        """,
    ),
    _case(
        "while-true-break-then-release",
        """
        def f(self):
            self.lock.acquire()
            while True:
                if self.step():
                    break
            self.lock.release()
        """,
    ),
    _case(
        "while-true-leaves-only-by-return",
        """
        def f(self):
            self.lock.acquire()
            while True:
                if self.step():
                    self.lock.release()
                    return
        """,
    ),
    _case(
        "acquire-release-each-iteration",
        """
        def f(self, items):
            for item in items:
                self.lock.acquire()
                if item is None:
                    self.lock.release()
                    continue
                self.seen.add(item)
                self.lock.release()
        """,
    ),
    _case(
        "finally-in-loop-with-continue",
        """
        async def f(self, items):
            for item in items:
                await self._lock.acquire()
                try:
                    if item is None:
                        continue
                    if item == "stop":
                        return
                finally:
                    self._lock.release()
        """,
    ),
    _case(
        "trio-acquire-nowait-would-block",
        """
        def try_bump(self):
            try:
                self._lock.acquire_nowait()
            except trio.WouldBlock:
                return False
            try:
                self.n += 1
                return True
            finally:
                self._lock.release()
        """,
    ),
    _case(
        "if-acquire-nonblocking",
        """
        def f(lock):
            if lock.acquire(blocking=False):
                try:
                    return work()
                finally:
                    lock.release()
            return None
        """,
    ),
    _case(
        "if-not-acquire-return",
        """
        def f(lock):
            if not lock.acquire(timeout=1):
                return None
            x = work()
            lock.release()
            return x
        """,
    ),
    _case(
        "flag-from-timed-acquire",
        """
        def f(lock):
            ok = lock.acquire(timeout=1)
            if not ok:
                raise TimeoutError
            try:
                return work()
            finally:
                lock.release()
        """,
    ),
    _case(
        "release-in-handler-then-reraise",
        """
        def f(self):
            self.lock.acquire()
            try:
                x = self.compute()
            except KeyError:
                self.lock.release()
                raise
            self.lock.release()
            return x
        """,
    ),
    _case(
        "nested-try-finally-inside-outer-except",
        """
        def close_all(handlers):
            for h in handlers:
                try:
                    try:
                        h.acquire()
                        h.flush()
                    except OSError:
                        pass
                    finally:
                        h.release()
                except Exception:
                    raise
        """,
    ),
    _case(
        "match-releases-in-every-arm",
        """
        def f(self, cmd):
            self.lock.acquire()
            match cmd:
                case "a":
                    self.lock.release()
                    return 1
                case _:
                    self.lock.release()
            return 0
        """,
    ),
    _case(
        "nested-def-does-not-confuse-outer",
        """
        async def outer(self):
            await self._lock.acquire()
            try:
                def helper():
                    return 1
                return helper()
            finally:
                self._lock.release()
        """,
    ),
    _case(
        "not-locks",
        """
        def f(pool, conn, path):
            pool.release(conn)
            with self._block:
                with open(path) as fh:
                    return fh.read()
        """,
    ),
]

BAD = [
    _case(
        "go-rlock-return-in-loop",
        """
        async def lookup(self, name):
            await self.lock.acquire_read()  # LEAK
            ips = []
            for key, values in self.entries.items():
                if key == name:
                    ips.extend(values)
                    return ips
            self.lock.release_read()
            return None
        """,
        "lookup",
    ),
    _case(
        "early-return-in-while",
        """
        def f(self):
            self.lock.acquire()  # LEAK
            while self.pending:
                if self.pending.pop() is None:
                    return
            self.lock.release()
        """,
        "f",
    ),
    _case(
        "no-release",
        """
        async def f(self):
            await self._lock.acquire()  # LEAK
            self.n += 1
        """,
        "f",
    ),
    _case(
        "raise-while-held",
        """
        def f(self, x):
            self.lock.acquire_write()  # LEAK
            if x is None:
                raise ValueError("x")
            self.lock.release_write()
        """,
        "f",
    ),
    _case(
        "release-in-one-if-branch",
        """
        def f(self, x):
            self.lock.acquire()  # LEAK
            if x:
                self.lock.release()
            else:
                log(x)
        """,
        "f",
    ),
    _case(
        "elif-branch-missing-release",
        """
        def f(self, x):
            self.lock.acquire()  # LEAK
            if x == 1:
                self.lock.release()
            elif x == 2:
                pass
            else:
                self.lock.release()
        """,
        "f",
    ),
    _case(
        "release-of-other-lock",
        """
        def f(self):
            self.a_lock.acquire()  # LEAK
            self.b_lock.release()
        """,
        "f",
    ),
    _case(
        "acquire-write-release-read",
        """
        async def f(self):
            await self.lock.acquire_write()  # LEAK
            try:
                self.gen += 1
            finally:
                self.lock.release_read()
        """,
        "f",
    ),
    _case(
        "break-skips-release",
        """
        def f(self, items):
            for item in items:
                self.lock.acquire()  # LEAK
                if item is None:
                    break
                self.lock.release()
        """,
        "f",
    ),
    _case(
        "continue-skips-release",
        """
        def f(self, items):
            for item in items:
                self.lock.acquire()  # LEAK
                if item is None:
                    continue
                self.lock.release()
        """,
        "f",
    ),
    _case(
        "try-except-no-finally-handler-returns",
        """
        def f(self, key):
            self.lock.acquire_read()  # LEAK
            try:
                value = self.entries[key]
            except KeyError:
                return None
            self.lock.release_read()
            return value
        """,
        "f",
    ),
    _case(
        "try-except-no-finally-handler-reraises",
        """
        def f(self, key):
            try:
                self.lock.acquire()  # LEAK
                value = self.parse(key)
                self.lock.release()
            except ValueError:
                log(key)
                raise
            return value
        """,
        "f",
    ),
    _case(
        "return-inside-try-with-except",
        """
        def f(self, key):
            self.lock.acquire()  # LEAK
            try:
                return self.entries[key]
            except KeyError:
                pass
            self.lock.release()
        """,
        "f",
    ),
    _case(
        "flag-true-branch-returns",
        """
        def f(lock):
            ok = lock.acquire(timeout=1)  # LEAK
            if ok:
                return work()
            return None
        """,
        "f",
    ),
    _case(
        "nested-def-leaks-alone",
        """
        def outer(self):
            with self._lock:
                pass
            def inner():
                self._lock.acquire()  # LEAK
                return 1
            return inner
        """,
        "outer.<locals>.inner",
    ),
    _case(
        "nested-def-release-does-not-count-for-outer",
        """
        def outer(self):
            self._lock.acquire()  # LEAK
            def done():
                self._lock.release()
            return done
        """,
        "outer",
    ),
    _case(
        "method-in-class",
        """
        class Table:
            async def lookup(self, name):
                await self.lock.acquire_read()  # LEAK
                if name in self.entries:
                    return self.entries[name]
                self.lock.release_read()
        """,
        "Table.lookup",
    ),
]


def _leak_lines(source: str) -> list[int]:
    return [n for n, text in enumerate(source.splitlines(), 1) if "# LEAK" in text]


@pytest.mark.parametrize("case", GOOD, ids=[c.id for c in GOOD])
def test_good_snippet_is_not_flagged(case: Case) -> None:
    report = lockcheck.check_source(case.source, "good.py")
    assert report.findings == []


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_bad_snippet_is_flagged_at_its_acquire(case: Case) -> None:
    report = lockcheck.check_source(case.source, "bad.py")
    findings = [f for f in report.findings if not f.acknowledged]
    assert [f.line for f in findings] == _leak_lines(case.source)
    assert sorted({f.function for f in findings}) == sorted(case.functions)


def test_things_that_are_not_locks_are_not_listed() -> None:
    (case,) = [c for c in GOOD if c.id == "not-locks"]
    assert lockcheck.check_source(case.source).functions == ()


def test_go_shape_message_names_lock_side_and_exit() -> None:
    (case,) = [c for c in BAD if c.id == "go-rlock-return-in-loop"]
    (finding,) = lockcheck.check_source(case.source, "table.py").findings
    assert str(finding) == (
        "table.py:3: in lookup(): read lock on self.lock acquired here may stay held: "
        "return at line 8 without release_read"
    )
    assert (finding.lock, finding.kind, finding.exits) == ("self.lock", "read", (("return", 8),))


def test_mismatched_release_is_named_in_the_message() -> None:
    (case,) = [c for c in BAD if c.id == "acquire-write-release-read"]
    (finding,) = lockcheck.check_source(case.source, "m.py").findings
    assert finding.kind == "write"
    assert "without release_write" in finding.message
    assert "line 7 releases the read lock on self.lock, a different lock" in finding.message


def test_every_leaking_path_is_reported() -> None:
    source = textwrap.dedent(
        """
        def f(self, x):
            self.lock.acquire()
            if x:
                return 1
            if x is None:
                raise ValueError
        """
    )
    (finding,) = lockcheck.check_source(source).findings
    assert finding.exits == (("return", 5), ("raise", 7), ("end", 7))


def test_listing_shows_every_acquire_release_and_with() -> None:
    source = textwrap.dedent(
        """
        async def f(self):
            await self.lock.acquire_write()
            self.lock.release_write()
            async with self.lock.read():
                pass
            with self._lock:
                def inner():
                    other.acquire()
        """
    )
    report = lockcheck.check_source(source)
    outer, inner = report.functions
    assert [(e.line, e.action, e.lock, e.side) for e in outer.events] == [
        (3, "acquire_write", "self.lock", "write"),
        (4, "release_write", "self.lock", "write"),
        (5, "async with", "self.lock", "read"),
        (7, "with", "self._lock", "lock"),
    ]
    assert outer.events[2].until == 6
    assert inner.name == "f.<locals>.inner"
    assert [(e.line, e.action, e.lock) for e in inner.events] == [(9, "acquire", "other")]


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ("acquire", "missing-runlock demo"),
        ("def", "missing-runlock demo"),
        ("bare", None),
    ],
)
def test_ignore_marker_acknowledges(where: str, reason: str | None) -> None:
    marker = "# lockcheck: ignore" if reason is None else f"# lockcheck: ignore[{reason}]"
    def_line = f"def leaky(self):  {marker}" if where == "def" else "def leaky(self):"
    acquire = "self.lock.acquire_read()" + (f"  {marker}" if where != "def" else "")
    source = f"{def_line}\n    {acquire}\n    return 1\n"
    (finding,) = lockcheck.check_source(source).findings
    assert finding.acknowledged
    assert finding.reason == reason


def test_marker_elsewhere_does_not_acknowledge() -> None:
    source = "def leaky(self):\n    self.lock.acquire()\n    return 1  # lockcheck: ignore\n"
    (finding,) = lockcheck.check_source(source).findings
    assert not finding.acknowledged


# --- command line -------------------------------------------------------------

BAD_SOURCE = BAD[0].source
GOOD_SOURCE = GOOD[3].source


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_exit_0_when_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _write(tmp_path / "good.py", GOOD_SOURCE)
    assert lockcheck.main([str(good)]) == 0
    out = capsys.readouterr().out
    assert "acquire_read" in out and "release_read" in out
    assert "may stay held" not in out


def test_exit_1_and_text_output_when_flagged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _write(tmp_path / "table.py", BAD_SOURCE)
    assert lockcheck.main([str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}:3: in lookup(): read lock on self.lock acquired here may stay held" in out
    assert "  lookup() line 2" in out


def test_quiet_prints_only_open_findings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _write(tmp_path / "table.py", BAD_SOURCE)
    acked = _write(tmp_path / "acked.py", "def f(l):\n    l.acquire()  # lockcheck: ignore\n")
    assert lockcheck.main(["--quiet", str(bad), str(acked)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{bad}:3: in lookup(): ")


def test_acknowledged_findings_do_not_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = "def f(l):  # lockcheck: ignore[handed to the caller]\n    l.acquire()\n"
    path = _write(tmp_path / "acked.py", source)
    assert lockcheck.main([str(path)]) == 0
    assert "acknowledged (handed to the caller)" in capsys.readouterr().out


def test_json_output_parses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _write(tmp_path / "table.py", BAD_SOURCE)
    acked = _write(tmp_path / "acked.py", "def f(l):\n    l.acquire()  # lockcheck: ignore[x]\n")
    assert lockcheck.main([str(bad), str(acked), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    by_file = {item["file"]: item for item in data}
    assert set(by_file) == {str(bad), str(acked)}
    leak = by_file[str(bad)]
    assert {k: leak[k] for k in ("function", "line", "lock", "kind", "acknowledged")} == {
        "function": "lookup",
        "line": 3,
        "lock": "self.lock",
        "kind": "read",
        "acknowledged": False,
    }
    assert leak["message"].startswith("read lock on self.lock acquired here may stay held")
    assert by_file[str(acked)]["acknowledged"] is True
    assert by_file[str(acked)]["reason"] == "x"


def test_json_output_is_an_empty_list_when_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _write(tmp_path / "good.py", GOOD_SOURCE)
    assert lockcheck.main(["--json", str(good)]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_exit_2_on_missing_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "x.py"
    assert lockcheck.main([str(missing)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"cowdns lockcheck: cannot read {missing}: [Errno 2] No such file or directory\n"
    )


def test_exit_2_on_syntax_error_even_with_findings_elsewhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = _write(tmp_path / "broken.py", "def f(:\n    pass\n")
    bad = _write(tmp_path / "table.py", BAD_SOURCE)
    assert lockcheck.main([str(broken), str(bad)]) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert line.startswith(f"cowdns lockcheck: cannot parse {broken}:1: ")
    assert "may stay held" in captured.out  # the readable file is still checked


def test_directory_walk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path / "pkg" / "good.py", GOOD_SOURCE)
    deep = _write(tmp_path / "pkg" / "sub" / "deep.py", BAD_SOURCE)
    _write(tmp_path / "pkg" / "sub" / "notes.txt", BAD_SOURCE)
    _write(tmp_path / "pkg" / ".venv" / "vendored.py", BAD_SOURCE)
    assert list(lockcheck.iter_python_files(tmp_path / "pkg")) == [
        str(tmp_path / "pkg" / "good.py"),
        str(deep),
    ]
    assert lockcheck.main(["--json", str(tmp_path / "pkg")]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [(item["file"], item["line"]) for item in data] == [(str(deep), 3)]


def test_runs_as_a_module(tmp_path: Path) -> None:
    bad = _write(tmp_path / "table.py", BAD_SOURCE)
    done = subprocess.run(
        [sys.executable, "-m", "cowdns.lockcheck", "--quiet", str(bad)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout.startswith(f"{bad}:3: in lookup(): read lock on self.lock")
    assert done.stderr == ""


def test_cowdns_itself_has_no_open_findings(capsys: pytest.CaptureFixture[str]) -> None:
    assert lockcheck.main(["--quiet", str(REPO / "cowdns")]) == 0, capsys.readouterr().out
