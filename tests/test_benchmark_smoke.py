"""benchmarks/run.py runs end to end (warm caches, few requests) and prints its whole table.
The numbers themselves are judged in docs/benchmarks.md, not here."""

import subprocess
import sys

import pytest
from conftest import TEMPLATE

pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("docker")]

ROWS = [
    "Runtime / floor",
    "Runtime smaller than naive by",
    "Rebuild after a source-only change",
    "torch wheels fetched: cold / dependency rebuild",
    "`docker run` to healthy",
    "Predict latency p50 / p95",
    "Predict throughput",
]


def test_benchmark_smoke():
    done = subprocess.run(
        [sys.executable, str(TEMPLATE / "benchmarks" / "run.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for row in ROWS:
        assert f"| {row}" in done.stdout, row
    # A dependency change must not fetch torch again, even in a smoke run.
    assert "| 0 on rebuild: met |" in done.stdout, done.stdout
