"""The test run's phases, each timed against its budget, so that a slow phase shows in every run
and one past its budget fails the run (CI's limit is 90 minutes on 2 cores; see
docs/test-timings.md for the measured runs the budgets come from). Each phase also notes the
disk left when it ended (under Docker's usual root where there is one, which shares CI's disk),
and the report names the lowest.

scripts/test times its own steps (`record`), the pytest session its modules and each image
(tests/conftest.py), and `report` prints the table at the end and exits 1 when a phase is over:

    python -m template_testing.timing start                  # a new run: forget the last one
    python -m template_testing.timing record PHASE SECONDS BUDGET
    python -m template_testing.timing report                 # the table; exit 1 if over budget
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .commands import TEMPLATE

TIMINGS = TEMPLATE / ".cache" / "timings.tsv"
RUN_VARIABLE = "TDT_TIMING_RUN"  # set by scripts/test: the pytest session adds to its record


DOCKER_ROOT = Path("/var/lib/docker")


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    budget: float
    free_gb: float

    @property
    def over(self) -> bool:
        return self.seconds > self.budget


def start(path: Path = TIMINGS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")


def record(name: str, seconds: float, budget: float, path: Path = TIMINGS) -> None:
    """Append one phase (pytest-xdist workers and the shell append to the same file; one short
    line per write, in append mode, so lines never interleave)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(DOCKER_ROOT if DOCKER_ROOT.is_dir() else TEMPLATE).free / 1e9
    with path.open("a") as timings:
        timings.write(f"{name}\t{seconds:.1f}\t{budget:.0f}\t{free:.1f}\n")


@contextmanager
def timed(name: str, budget: float) -> Iterator[None]:
    """Record the block's time as a phase, whether it passes or fails."""
    started = time.monotonic()
    try:
        yield
    finally:
        record(name, time.monotonic() - started, budget)


def phases(path: Path = TIMINGS) -> list[Phase]:
    if not path.is_file():
        return []
    rows = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
    return [Phase(name, float(seconds), float(budget), float(free)) for name, seconds, budget, free
            in rows]  # fmt: skip


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def report(path: Path = TIMINGS) -> int:
    """Print the phases in the order they ended; 1 if any is over its budget, else 0."""
    found = phases(path)
    if not found:
        print("timing: no phase was recorded")
        return 0
    width = max(len("phase"), *(len(p.name) for p in found))
    print(f"\n{'=' * 30} timing summary {'=' * 30}")
    print(f"{'phase':<{width}}  {'took':>6}  {'budget':>6}  {'free GB':>7}")
    for phase in found:
        mark = "  OVER BUDGET" if phase.over else ""
        print(f"{phase.name:<{width}}  {minutes(phase.seconds):>6}  {minutes(phase.budget):>6}  "
              f"{phase.free_gb:>7.1f}{mark}")  # fmt: skip
    lowest = min(found, key=lambda p: p.free_gb)
    print(f"least disk free: {lowest.free_gb:.1f} GB, after {lowest.name}")
    over = [p for p in found if p.over]
    if over:
        names = ", ".join(p.name for p in over)
        print(f"timing: {len(over)} phase(s) over budget: {names}. A phase that slows past its "
              "budget pushes CI toward its 90-minute limit: make it faster, or raise its budget "
              "in the same change with the measured reason.")  # fmt: skip
        return 1
    return 0


def main(argv: list[str]) -> int:
    match argv:
        case ["start"]:
            start()
        case ["record", name, seconds, budget]:
            record(name, float(seconds), float(budget))
        case ["report"]:
            return report()
        case _:
            print(__doc__, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
