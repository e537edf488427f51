"""Compare the Poetry and the uv path of one project and write a markdown table.

    python -m benchmarks.package_managers            # writes docs/package-manager-benchmarks.md
    python -m benchmarks.package_managers --print    # prints the table only

The same answers (torch 2.13.0, CPU, Python 3.11) baked twice, package_manager poetry and uv.
Measures, for each, in one run on this machine: the lock (`docker build --target lock`, no lock
yet), a cold runtime build, a rebuild after a one-line source change, runtime and runtime-slim
size against the floor (base image + the installed venv; benchmarks/run.py's targets), and how
long the Dockerfile's build stages are (and the helper scripts they run). "Cold" is Docker's
layer cache off with the download caches warm (the wheels are the same for both paths, and a
proxy's download speed is not what is compared).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.arm64 import build_uncached, project_base
from benchmarks.run import TARGETS, mb, timed, verdict
from template_testing.commands import TEMPLATE as ROOT
from template_testing.engine import remove_images
from template_testing.images import ImageHost, image_size, venv_bytes
from template_testing.network import this_host
from torch_compat import load

MANAGERS = ("poetry", "uv")
ANSWERS = {"python_version": "3.11", "torch_version": "2.13.0", "accelerator": "cpu"}
# Scripts the build stages run, besides the Dockerfile (the Poetry path's only).
HELPERS = ("docker/export_requirements.py", "docker/install_locked.sh")


def code_lines(text: str) -> int:
    lines = [line.strip() for line in text.splitlines()]
    return sum(1 for line in lines if line and not line.startswith("#"))


def build_stage_lines(project: Path) -> dict:
    """Lines (no comments, no blanks) of the Dockerfile before its shared runtime stages, and of
    the helper scripts those stages run."""
    dockerfile = (project / "Dockerfile").read_text()
    stages = dockerfile.split("# --- runtime-base:")[0]
    helpers = sum(code_lines((project / h).read_text()) for h in HELPERS if (project / h).exists())
    return {
        "dockerfile_build_lines": code_lines(stages),
        "build_instructions": len(re.findall(r"^[A-Z]+ ", stages, re.MULTILINE)),
        "helper_lines": helpers,
    }


def measure(host: ImageHost, manager: str) -> dict:
    answers = {"project_name": f"Bench {manager}", "package_manager": manager, **ANSWERS}
    plan = load().plan(answers)
    if reason := host.cannot_build(plan):
        raise SystemExit(f"benchmark: cannot build the {manager} project: {reason}")
    tags = {t: f"bench-{manager}-{t}" for t in ("runtime", "runtime-slim")}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        project = host.bake(Path(tmp), plan, **answers)  # bakes, then locks with Docker alone
        r = {"bake_and_lock_s": time.perf_counter() - start}
        project.lock_file.unlink()
        r["lock_s"], _ = timed(
            project.docker_build, "--no-cache", "--target", "lock",
            "--output", f"type=local,dest={project.path}",
        )  # fmt: skip
        r.update(build_stage_lines(project.path))
        r["cold_build_s"] = build_uncached(project, "runtime", tags["runtime"])
        model = project.path / "src" / project.package / "model.py"
        model.write_text(model.read_text() + "\n# touched by the benchmark\n")
        r["source_rebuild_s"], _ = timed(project.build, "runtime", tags["runtime"])
        r["base_bytes"] = image_size(project_base(project))
        r["venv_bytes"] = venv_bytes(tags["runtime"])
        r["runtime_bytes"] = image_size(tags["runtime"])
        r["slim_build_s"] = build_uncached(project, "runtime-slim", tags["runtime-slim"])
        r["slim_bytes"] = image_size(tags["runtime-slim"])
        remove_images(*tags.values())
    return r


def floor_ratio(r: dict, key: str) -> float:
    return r[key] / (r["base_bytes"] + r["venv_bytes"])


def size_target(results: dict[str, dict], key: str, target: str) -> str:
    ok = all(floor_ratio(r, key) <= TARGETS[target] for r in results.values())
    return f"≤ {TARGETS[target]} of floor: {verdict(ok)}"


# (measure, how one result shows it)
MEASURES = [
    ("Dockerfile build stages: lines (no comments, blanks)", lambda r: r["dockerfile_build_lines"]),
    ("... their instructions", lambda r: r["build_instructions"]),
    ("helper scripts the build stages run: lines", lambda r: r["helper_lines"]),
    ("lock (`--target lock`, no lock yet, layer cache off)", lambda r: f"{r['lock_s']:.1f} s"),
    ("cold runtime build (layer cache off)", lambda r: f"{r['cold_build_s']:.1f} s"),
    ("rebuild after a source change", lambda r: f"{r['source_rebuild_s']:.1f} s"),
    ("runtime-slim build (layer cache off)", lambda r: f"{r['slim_build_s']:.1f} s"),
    ("floor: base + venv", lambda r: mb(r["base_bytes"] + r["venv_bytes"])),
    ("runtime size (of floor)",
     lambda r: f"{mb(r['runtime_bytes'])} ({floor_ratio(r, 'runtime_bytes'):.3f})"),
    ("runtime-slim size (of floor)",
     lambda r: f"{mb(r['slim_bytes'])} ({floor_ratio(r, 'slim_bytes'):.3f})"),
]  # fmt: skip


def table(results: dict[str, dict]) -> str:
    targets = {
        "runtime size (of floor)": size_target(results, "runtime_bytes", "runtime_vs_floor"),
        "runtime-slim size (of floor)": size_target(results, "slim_bytes", "slim_vs_floor"),
    }
    rows = ["| measure | " + " | ".join(results) + " | target |",
            "| --- |" + " --- |" * (len(results) + 1)]  # fmt: skip
    for name, show in MEASURES:
        cells = " | ".join(str(show(r)) for r in results.values())
        rows.append(f"| {name} | {cells} | {targets.get(name, '')} |")
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print", action="store_true", help="print the table, write nothing")
    parser.add_argument(
        "--output", type=Path, default=ROOT / "docs" / "package-manager-benchmarks.md"
    )
    args = parser.parse_args()
    print(f"benchmark: {this_host().describe()}", file=sys.stderr)
    host = ImageHost.start()
    try:
        results = {manager: measure(host, manager) for manager in MANAGERS}
    finally:
        host.stop()
    print(table(results))
    if args.print:
        return
    header = (
        "# Poetry and uv paths\n\n"
        f"`python -m benchmarks.package_managers` ({this_host().describe()}), "
        f"{time.strftime('%Y-%m-%d')}: one project, torch {ANSWERS['torch_version']} CPU, "
        f"Python {ANSWERS['python_version']}, linux/amd64, baked with each package manager.\n\n"
    )
    write(args.output, header, results)


NOTES = """
Reading it: the uv Dockerfile's build stages are about as long as Poetry's, with fewer
instructions, but they are the whole install path; Poetry's also runs
`docker/export_requirements.py` and `docker/install_locked.sh` (poetry.lock to hash-pinned
requirement files, then uv installs those). Both images hold the same venv, so they sit at the
same ratio of the floor. A source change rebuilds only the source layer on both paths (the
project is not installed into the venv). Offline (this machine), the uv project is locked for
linux/amd64 alone, the platform the local index has wheels of; poetry.lock likewise holds only
the files the index serves.
"""


def write(output: Path, header: str, results: dict[str, dict]) -> None:
    output.write_text(header + table(results) + NOTES + "\nRaw results:\n\n```json\n"
                      + json.dumps(results, indent=2) + "\n```\n")  # fmt: skip


if __name__ == "__main__":
    main()
