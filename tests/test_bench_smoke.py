"""The bench runs end to end in a tiny configuration and writes its table and figures.

No numbers are asserted: the bench compares modes measured in one run; whether
one is faster is for the reader of its report, not for a test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ("cow", "locked")
SCENARIOS = ("steady", "reload-200", "bug")

pytestmark = pytest.mark.skipif(
    shutil.which("dnsperf") is None or shutil.which("stdbuf") is None,
    reason="the bench needs dnsperf (Debian package dnsperf) and stdbuf",
)


def _table_rows(markdown: str) -> dict[tuple[str, str], list[str]]:
    rows: dict[tuple[str, str], list[str]] = {}
    for line in markdown.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 7 and cells[0] in SERVERS:
            rows[(cells[0], cells[1])] = cells
    return rows


def test_tiny_bench_writes_table_json_and_figures(tmp_path: Path) -> None:
    out = tmp_path / "results"
    command = [sys.executable, "-m", "bench", "--out", str(out)]
    command += ["--duration", "1.5", "--sizes", "200", "--reload-interval", "0.4"]
    command += ["--rate", "200", "--timeout", "0.5", "--capacity-duration", "0.5"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stdout + done.stderr

    # One progress line per phase, then the table.
    assert "steady / cow: serving 200 names" in done.stdout
    markdown = (out / "latest.md").read_text(encoding="utf-8")
    assert markdown in done.stdout
    rows = _table_rows(markdown)
    assert set(rows) == {(server, scenario) for server in SERVERS for scenario in SCENARIOS}
    for cells in rows.values():
        assert float(cells[2]) >= 0  # qps parses as a number

    document = json.loads((out / "latest.json").read_text(encoding="utf-8"))
    runs = {(run["server"], run["scenario"]): run for run in document["runs"]}
    assert set(runs) == set(rows)
    assert all(run["sent"] > 0 for run in runs.values())
    assert document["machine"]["cores"]

    from matplotlib.image import imread

    for scenario in SCENARIOS:
        image = imread(out / f"{scenario}.png")
        height, width = image.shape[:2]
        assert width > 300 and height > 200, scenario


def test_tiny_peers_and_memory_runs_with_cowdns_only(tmp_path: Path) -> None:
    """The peer and memory code paths, with cowdns as the only server (no NSD, Knot, Twisted)."""
    out = tmp_path / "results"
    command = [sys.executable, "-m", "bench", "--out", str(out), "--scenarios", "peers,memory"]
    command += ["--servers", "cow", "--sizes", "200", "--repetitions", "1"]
    command += ["--peer-duration", "0.5", "--memory-reloads", "1", "--timeout", "0.5"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stdout + done.stderr

    document = json.loads((out / "latest.json").read_text(encoding="utf-8"))
    (peers,) = document["peers"]
    assert list(peers["servers"]) == ["cow"]
    (sample,) = peers["samples"]
    assert sample["qps"] > 0 and sample["sent"] > 0
    # The mixed query file asks for names that exist and names that do not.
    assert {"NOERROR", "NXDOMAIN"} <= set(sample["rcodes"])
    (memory,) = document["memory"]
    assert memory["server"] == "cow" and memory["size"] == 200
    assert memory["steady_kb"] > 0 and len(memory["reloads"]) == 1
    assert memory["peak_kb"] >= memory["reloads"][0]["sampled_peak_kb"] > 0

    markdown = (out / "latest.md").read_text(encoding="utf-8")
    assert "| cow | cowdns serve --mode cow |" in markdown
    assert "MB per 1M names" in markdown
