"""Measure the linux/arm64 images and write a markdown table.

    python -m benchmarks.arm64            # CPU (torch 2.10.0), writes docs/arm64-benchmarks.md
    python -m benchmarks.arm64 --cuda     # and CUDA (torch 2.14.1, CUDA 13.0)

Measures, in one run: runtime and runtime-slim size against their floor (base image + the
installed venv, the same floor and targets as benchmarks/run.py), build time with Docker's layer
cache off (pip's and uv's download caches stay warm), and seconds from `docker run` to healthy.
On an x86_64 host every arm64 number is taken under QEMU user emulation and says so: emulated
build and start times are many times a native arm64 machine's; sizes are the same.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.run import TARGETS, mb, timed, verdict, wait_healthy
from template_testing.commands import TEMPLATE as ROOT
from template_testing.commands import sh
from template_testing.engine import HOST_MACHINE, base_image, docker, ensure_space, remove_images
from template_testing.images import (
    ImageHost,
    cuda_libraries,
    image_size,
    libraries_twice,
    run_flags,
    train_into,
    venv_bytes,
)
from template_testing.network import this_host
from torch_compat import load

ARM64 = "linux/arm64"
BUILDS = {  # what the image tests build for arm64 (tests/combinations.py)
    "cpu": {"torch_version": "2.10.0", "accelerator": "cpu"},
    "cuda": {"torch_version": "2.14.1", "accelerator": "cuda"},
}


def bake(tmp: str, host: ImageHost, build: str):
    answers = {
        "project_name": f"Bench arm64 {build}",
        "python_version": "3.11",
        "cuda_version": "auto",
        "include_torchvision": "no",
        "include_torchaudio": "no",
        "platforms": ARM64,
        **BUILDS[build],
    }
    plan = load().plan(answers)
    if reason := host.cannot_build(plan):
        raise SystemExit(f"benchmark: cannot build arm64 {build}: {reason}")
    return host.bake(Path(tmp), plan, **answers)


def build_uncached(project, target: str, tag: str) -> float:
    seconds, _ = timed(
        project.docker_build, "--no-cache", "--target", target, "-t", tag, *project.platform_args()
    )
    return seconds


def seconds_to_healthy(image: str) -> float:
    """Train a checkpoint, then time `docker run` -> healthy."""
    volume = f"bench-arm64-{uuid.uuid4().hex[:8]}"
    container = ""
    try:
        train_into(image, volume, "--epochs", "1")
        start = time.perf_counter()
        container = sh(docker(), "run", "-d", *run_flags(image),
                       "-v", f"{volume}:/app/artifacts:ro", image).strip()  # fmt: skip
        wait_healthy(container, timeout=900)
        return time.perf_counter() - start
    finally:
        if container:
            subprocess.run([docker(), "rm", "-f", container], capture_output=True)
        subprocess.run([docker(), "volume", "rm", "-f", volume], capture_output=True)


def measure(host: ImageHost, build: str) -> dict:
    if build == "cuda":
        ensure_space()
    tags = {t: f"bench-arm64-{build}-{t}" for t in ("runtime", "runtime-slim")}
    with tempfile.TemporaryDirectory() as tmp:
        project = bake(tmp, host, build)
        r = {"emulated": project.emulated}
        r["build_s"] = build_uncached(project, "runtime", tags["runtime"])
        image = tags["runtime"]
        r["machine"] = sh(docker(), "run", "--rm", *run_flags(image), "--entrypoint", "uname",
                          image, "-m").strip()  # fmt: skip
        r["base_bytes"] = image_size(project_base(project))
        r["venv_bytes"] = venv_bytes(image)
        r["runtime_bytes"] = image_size(image)
        r["healthy_s"] = seconds_to_healthy(image)
        if build == "cuda":
            r["libs_twice"] = list(libraries_twice(cuda_libraries(image), ignore="/triton/"))
        remove_images(image)  # a CUDA image is ~6 GB: make room for the slim one
        r["slim_build_s"] = build_uncached(project, "runtime-slim", tags["runtime-slim"])
        r["slim_bytes"] = image_size(tags["runtime-slim"])
        remove_images(tags["runtime-slim"])
    return r


def project_base(project) -> str:
    """The base image the build used (offline, the arm64 stand-in)."""
    plan, arch = project.plan, project.platform.split("/")[1]
    if project.network.offline:
        return base_image(plan.python, plan.debian_release, arch)
    return f"python:{plan.python}-slim-{plan.debian_release}"


def table(results: dict[str, dict]) -> str:
    rows = ["| build | measure | value | target |", "| --- | --- | --- | --- |"]
    for build, r in results.items():
        floor = r["base_bytes"] + r["venv_bytes"]
        how = "emulated (QEMU on x86_64)" if r["emulated"] else "native"
        slim_target = TARGETS["slim_vs_floor" if build == "cpu" else "cuda_slim_vs_floor"]
        rows += [
            f"| {build} | `uname -m` in the image | {r['machine']} | aarch64: "
            + verdict(r["machine"] == "aarch64")
            + " |",
            f"| {build} | floor: base + venv | {mb(r['base_bytes'])} + {mb(r['venv_bytes'])} = "
            f"{mb(floor)} | |",
            f"| {build} | runtime | {mb(r['runtime_bytes'])} ({r['runtime_bytes'] / floor:.3f} of "
            f"floor) | ≤ {TARGETS['runtime_vs_floor']}: "
            + verdict(r["runtime_bytes"] / floor <= TARGETS["runtime_vs_floor"])
            + " |",
            f"| {build} | runtime-slim | {mb(r['slim_bytes'])} ({r['slim_bytes'] / floor:.3f} of "
            f"floor) | ≤ {slim_target}: " + verdict(r["slim_bytes"] / floor <= slim_target) + " |",
            f"| {build} | runtime build, no layer cache, {how} | {r['build_s']:.0f} s | — |",
            f"| {build} | runtime-slim build, no layer cache, {how} | {r['slim_build_s']:.0f} s "
            "| — |",
            f"| {build} | `docker run` → healthy, {how} | {r['healthy_s']:.1f} s | "
            f"≤ {TARGETS['healthy_seconds']} native; none emulated |",
        ]
        if "libs_twice" in r:
            twice = r["libs_twice"]
            rows.append(f"| {build} | CUDA libraries twice (Triton's CUPTI aside) | "
                        f"{len(twice)} | 0: {verdict(not twice)} |")  # fmt: skip
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cuda", action="store_true", help="also the CUDA image (~6 GB)")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "arm64-benchmarks.md")
    args = parser.parse_args()
    print(f"benchmark: {this_host().describe()}; host {HOST_MACHINE}", file=sys.stderr)
    host = ImageHost.start()
    results = {}
    try:
        for build in ["cpu", "cuda"] if args.cuda else ["cpu"]:
            results[build] = measure(host, build)
            print(table(results), flush=True)
    finally:
        host.stop()
    header = (
        "# linux/arm64 images\n\n"
        f"`python -m benchmarks.arm64{' --cuda' if args.cuda else ''}` on a {HOST_MACHINE} host "
        f"({this_host().describe()}), {time.strftime('%Y-%m-%d')}. Builds: "
        + "; ".join(f"{b}: torch {BUILDS[b]['torch_version']}, Python 3.11" for b in results)
        + ". Emulated times are QEMU user emulation's, not an arm64 machine's.\n\n"
    )
    args.output.write_text(header + table(results) + "\nRaw results:\n\n```json\n"
                           + json.dumps(results, indent=2) + "\n```\n")  # fmt: skip


if __name__ == "__main__":
    main()
