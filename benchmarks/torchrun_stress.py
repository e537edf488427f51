"""torchrun exits 0 every time: a generated CPU project's 2-process training (gloo) run many times
beside a busy core, counting every exit that is not 0 and every abort. Writes
docs/torchrun-stress.md.

    python -m benchmarks.torchrun_stress [--runs 200]

The training is the project's own (`torchrun --standalone --nproc-per-node 2 -m PKG train`), kept
short (one small epoch) so that start-up and teardown, where the aborts were, dominate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from template_testing.commands import TEMPLATE, sh, tool
from template_testing.project_venv import TORCH, project_python

TRAIN_ARGS = ["--samples", "100", "--batch-size", "20", "--epochs", "1", "--device", "cpu"]
WHY = (
    "Why it once failed: DistributedDataParallel keeps references to the process group that "
    "`destroy_process_group` cannot drop (after it, gloo's `gloo_tcp_loop` and two "
    "`pt_gloo_runloop` threads still run; constructing a DDP model alone adds 10 references "
    "to the group), and finalizing the interpreter beside those threads aborted a rank "
    "(`terminate called without an active exception`): with the group destroyed but the "
    "interpreter finalized, this loop aborted in run 35, and a debugging loop in runs 4 and "
    "29. A torchrun worker now flushes its logs and ends with `os._exit` once its work is "
    "written (`distributed.exit_worker`)."
)
ABORT_MARKS = ("terminate called", "exitcode: -6", "Signals.SIGABRT", "Fatal Python error")


def bake(output: Path) -> Path:
    sh(tool("cookiecutter"), "--no-input", "-o", str(output), str(TEMPLATE),
       "project_name=Stress", "torch_version=2.13.0", "python_version=3.11")  # fmt: skip
    return output / "stress"


def one_run(python: Path, project: Path, work: Path) -> tuple[int, float, str]:
    """(exit status, seconds, output) of one 2-process training."""
    checkpoint = work / "model.pt"
    checkpoint.unlink(missing_ok=True)
    started = time.perf_counter()
    done = subprocess.run(
        [str(python.with_name("torchrun")), "--standalone", "--nproc-per-node", "2",
         "-m", "stress", "train", "--output", str(checkpoint), *TRAIN_ARGS],
        cwd=project, env={**os.environ, "PYTHONPATH": str(project / "src")},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = done.stdout + done.stderr
    if done.returncode == 0 and not checkpoint.is_file():
        return -1000, time.perf_counter() - started, output + "\n(no checkpoint written)"
    return done.returncode, time.perf_counter() - started, output


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--output", type=Path, default=TEMPLATE / "docs" / "torchrun-stress.md")
    args = parser.parse_args()
    python = project_python()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # the busy core
    failures: list[tuple[int, int, str]] = []
    seconds: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            project = bake(Path(tmp))
            for run in range(1, args.runs + 1):
                status, elapsed, output = one_run(python, project, Path(tmp))
                seconds.append(elapsed)
                if status != 0 or any(mark in output for mark in ABORT_MARKS):
                    failures.append((run, status, output[-2000:]))
                    print(f"run {run}: exit {status}\n{output[-2000:]}", file=sys.stderr)
                if run % 20 == 0:
                    print(f"{run} runs, {len(failures)} failed", file=sys.stderr)
    finally:
        busy.kill()
    write_table(args.output, args.runs, failures, seconds)
    print(args.output.read_text())
    return 1 if failures else 0


def write_table(path: Path, runs: int, failures: list, seconds: list[float]) -> None:
    aborts = [f for f in failures if any(mark in f[2] for mark in ABORT_MARKS)]
    rows = [
        ("runs", str(runs)),
        ("exit 0 with a checkpoint", str(runs - len(failures))),
        ("aborts (SIGABRT, `terminate called`)", str(len(aborts))),
        ("other failures", str(len(failures) - len(aborts))),
        ("seconds per run: median / max", f"{statistics.median(seconds):.1f} / {max(seconds):.1f}"),
    ]
    lines = [
        "# torchrun stress: 2-process CPU training, exit status every time",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} by `python -m benchmarks.torchrun_stress "
        f"--runs {runs}` on {os.cpu_count()} cores, one of them kept busy by a spinning process, "
        f"with {TORCH} (Python {sys.version_info.major}.{sys.version_info.minor}). Each run is "
        "the generated project's own `torchrun --standalone --nproc-per-node 2 -m PKG train "
        f"{' '.join(TRAIN_ARGS)}` (gloo).",
        "",
        "| | |",
        "| --- | --- |",
        *[f"| {name} | {value} |" for name, value in rows],
        "",
        "Target: every run exits 0 (no abort in at least 200 runs). "
        + ("Met." if not failures else f"MISSED: runs {[f[0] for f in failures]} failed."),
        "",
        WHY,
        "",
    ]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
