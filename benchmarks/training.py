"""Distributed training on this machine: one process against two under torchrun (gloo, CPU),
the default training of the generated CPU image. Writes docs/training-benchmarks.md.

    python -m benchmarks.training
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from template_testing.commands import TEMPLATE, sh
from template_testing.engine import docker, remove_images
from template_testing.images import ImageHost
from torch_compat import load

TARGETS = {"time_ratio": 1.25, "accuracy_points": 1.0}  # 2 processes vs 1, at most
VAL_ACC = re.compile(r"wrote \S+ \(val_acc ([0-9.]+)\)")
LOOP_SECONDS = re.compile(r"epoch \d+/\d+ .*\(([0-9.]+)s\)")  # time since training began


def train(image: str, *launcher: str) -> tuple[float, float, str]:
    """(seconds, validation accuracy, log) of the image's default training."""
    volume = f"bench-train-{os.getpid()}"
    entry = ["--entrypoint", launcher[0]] if launcher else []
    args = [*launcher[1:], "-m", "bench_train"] if launcher else []
    started = time.perf_counter()
    try:
        log = sh(docker(), "run", "--rm", "-v", f"{volume}:/app/artifacts", *entry, image,
                 *args, "train", with_stderr=True)  # fmt: skip
    finally:
        sh(docker(), "volume", "rm", "-f", volume)
    elapsed = time.perf_counter() - started
    return elapsed, float(VAL_ACC.findall(log)[-1]), log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=TEMPLATE / "docs" / "training-benchmarks.md")
    args = parser.parse_args()
    host = ImageHost.start()
    answers = {"project_name": "Bench Train", "python_version": "3.11", "torch_version": "2.13.0",
               "accelerator": "cpu"}  # fmt: skip
    plan = load().plan(answers)
    if reason := host.cannot_build(plan):
        raise SystemExit(f"training benchmark: cannot build the CPU image here: {reason}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            image = host.bake(Path(tmp), plan, **answers).build("runtime", "bench-train")
        one_s, one_acc, one_log = train(image)
        two_s, two_acc, log = train(image, "torchrun", "--standalone", "--nproc-per-node", "2")
        one_loop, two_loop = (float(LOOP_SECONDS.findall(x)[-1]) for x in (one_log, log))
    finally:
        remove_images("bench-train")
        host.stop()
    assert "world size 2" in log, log
    ratio, points = two_s / one_s, abs(two_acc - one_acc) * 100
    verdict = {True: "met", False: "**missed**"}
    text = "\n".join([
        "# Benchmark: distributed training (torchrun, gloo, CPU)",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `benchmarks/training.py`: the "
        f"default training (10 epochs, 2048 samples) in the CPU runtime image, {os.cpu_count()} "
        f"cores; times include `docker run` and importing torch. {host.network.describe()}.",
        "",
        "| measure | 1 process | 2 processes | target |",
        "| --- | --- | --- | --- |",
        f"| wall time | {one_s:.1f} s | {two_s:.1f} s | 2 ÷ 1 ≤ {TARGETS['time_ratio']}: "
        f"{ratio:.2f}, {verdict[ratio <= TARGETS['time_ratio']]} |",
        f"| … of it the training loop (from the logs) | {one_loop:.1f} s | {two_loop:.1f} s | |",
        f"| validation accuracy | {one_acc:.3f} | {two_acc:.3f} | within "
        f"{TARGETS['accuracy_points']:.0f} point: {points:.1f}, "
        f"{verdict[points <= TARGETS['accuracy_points']]} |",
        "",
        "The whole default training takes a few seconds, so the second interpreter's start-up, "
        "importing torch and the rendezvous weigh as much as the training itself; the two "
        "processes also share these 2 cores with each other and the Docker engine.",
    ]) + "\n"  # fmt: skip
    print(text)
    args.output.write_text(text)


if __name__ == "__main__":
    main()
