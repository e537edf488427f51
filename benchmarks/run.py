"""Measure the generated CPU image and write a markdown table.

    python -m benchmarks.run --cuda          # full run, writes docs/benchmarks.md
    python -m benchmarks.run --smoke         # quick: warm caches, few requests, prints the table

Measures on this machine, in one run: runtime image size against its floor (base image + the
installed venv) and against a naive single-stage Poetry image of the same project; cold build
time; rebuild after a source-only change and after adding one small dependency (and whether
torch was fetched again); seconds from `docker run` to healthy; predict latency p50/p95 and
requests per second. Needs what the image tests need (template_testing), online or offline.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from template_testing.commands import TEMPLATE as ROOT
from template_testing.commands import sh, tool
from template_testing.engine import docker, remove_images
from template_testing.images import (
    TRITON_VENDORED_CUPTI,
    ImageHost,
    cuda_libraries,
    free_port,
    image_size,
    libraries_twice,
    step_ran,
    train_into,
    venv_bytes,
)
from template_testing.network import ca_bundle, this_host
from torch_compat import load, tools

TARGETS = {
    "runtime_vs_floor": 1.03,  # runtime size / (base + venv) at most
    "slim_vs_floor": 0.88,  # runtime-slim size / (base + the full runtime venv) at most, CPU
    "cuda_slim_vs_floor": 0.92,  # the same for CUDA
    "docker_only_seconds": 60.0,  # cookiecutter -> first correct prediction, Docker alone, warm
    "smaller_than_naive": 0.35,  # at least this much smaller than the naive image
    "source_rebuild_share": 0.05,  # source-only rebuild / cold build at most
    "healthy_seconds": 5.0,
}


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


def wait_healthy(container: str, timeout: float = 60) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        status = sh(docker(), "inspect", "--format", "{{.State.Health.Status}}", container).strip()
        if status == "healthy":
            return time.perf_counter() - start
        time.sleep(0.1)
    raise AssertionError(f"{container} not healthy after {timeout}s")


def latency(port: int, features: list[list[float]], n: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = json.dumps({"features": features})
    times = []
    for _ in range(n):
        start = time.perf_counter()
        conn.request("POST", "/predict", body, {"content-type": "application/json"})
        response = conn.getresponse()
        response.read()
        assert response.status == 200
        times.append(time.perf_counter() - start)
    conn.close()
    return times


def throughput(port: int, features: list[list[float]], seconds: float, clients: int = 4) -> float:
    done = [0] * clients
    stop = time.perf_counter() + seconds

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        body = json.dumps({"features": features})
        while time.perf_counter() < stop:
            conn.request("POST", "/predict", body, {"content-type": "application/json"})
            conn.getresponse().read()
            done[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / seconds


# The torch install step of the Dockerfile's builder stage (its bind mount names the file).
TORCH_STEP = "/requirements/torch.txt"


def bake(tmp: str, host: ImageHost, torch_version: str, accelerator: str):
    answers = {
        "project_name": f"Bench {accelerator}",
        "python_version": "3.11",
        "torch_version": torch_version,
        "accelerator": accelerator,
        "cuda_version": "auto",
        "include_torchvision": "no",
        "include_torchaudio": "no",
    }
    plan = load().plan(answers)
    if reason := host.cannot_build(plan):
        raise SystemExit(f"benchmark: cannot build torch {torch_version} {accelerator}: {reason}")
    return host.bake(Path(tmp), plan, **answers)


def run(host: ImageHost, smoke: bool) -> dict:
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        project = bake(tmp, host, "2.13.0", "cpu")
        if not smoke:
            sh(docker(), "builder", "prune", "-af")
        results["cold_build_s"], log = timed(project.build_log, "runtime", "bench-runtime")
        image = "bench-runtime"
        results["cold_torch_installed"] = step_ran(log, TORCH_STEP)

        size = image_size(image)
        base = image_size("python:3.11-slim-bookworm")
        results.update(runtime_bytes=size, base_bytes=base, venv_bytes=venv_bytes(image))
        results["slim_build_s"], slim = timed(project.build, "runtime-slim", "bench-slim")
        results["slim_bytes"] = image_size(slim)
        results.update(installers(project))

        naive = ROOT / "benchmarks" / "naive.Dockerfile"
        results["naive_build_s"], _ = timed(
            project.docker_build, "-f", str(naive), "-t", "bench-naive",
            f"--build-arg=POETRY_VERSION={tools.pins()['poetry']}",
            f"--build-arg=PACKAGE={project.package}",
        )  # fmt: skip
        results["naive_bytes"] = image_size("bench-naive")

        # Source-only change: one line in the model module.
        model = project.path / "src" / project.package / "model.py"
        model.write_text(model.read_text() + "\n# touched by the benchmark\n")
        results["source_rebuild_s"], _ = timed(project.build, "runtime", "bench-runtime")

        # One small dependency: lock again (Docker alone), rebuild: does torch install again?
        pyproject = project.path / "pyproject.toml"
        text = pyproject.read_text()
        assert "dependencies = [\n" in text
        pyproject.write_text(
            text.replace("dependencies = [\n", 'dependencies = [\n    "six>=1.16",\n', 1)
        )
        project.lock()
        results["dependency_rebuild_s"], log = timed(project.build_log, "runtime", "bench-runtime")
        results["dependency_torch_installed"] = step_ran(log, TORCH_STEP)

        # Serve: train a checkpoint into a volume, then time `docker run` to healthy.
        volume = "bench-artifacts"
        train_into(image, volume, "--epochs", "5")
        port = free_port()
        start = time.perf_counter()
        container = sh(
            docker(),
            "run",
            "-d",
            "-p",
            f"127.0.0.1:{port}:8000",
            "-v",
            f"{volume}:/app/artifacts:ro",
            image,
        ).strip()
        try:
            wait_healthy(container)
            results["healthy_s"] = time.perf_counter() - start  # from before `docker run`
            one_row = project.class_centers(image)[:1]  # the model's width, from the model
            latency(port, one_row, 20)  # warm up
            times = sorted(latency(port, one_row, 50 if smoke else 500))
            results["p50_ms"] = statistics.median(times) * 1e3
            results["p95_ms"] = times[int(len(times) * 0.95) - 1] * 1e3
            results["rps"] = throughput(port, one_row, 2 if smoke else 10)
        finally:
            subprocess.run([docker(), "rm", "-f", container], capture_output=True)
            subprocess.run([docker(), "volume", "rm", "-f", volume], capture_output=True)
    return results


def installers(project) -> dict:
    """pip against uv installing the image's locked torch and main requirement files (hash
    checked, no dependency resolution) into a fresh venv on this host, with an empty cache and
    again with a warm one; and the import time of the result with and without bytecode."""
    req = project.build("requirements", "bench-requirements")
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for name in ("torch.txt", "main.txt"):
            path = Path(tmp) / name
            path.write_text(
                sh(docker(), "run", "--rm", "--entrypoint", "cat", req, f"/requirements/{name}")
            )
            files += ["-r", str(path)]
        indexes = [
            "--index-url",
            project.plan.package_index,
            "--extra-index-url",
            project.plan.index_url,
        ]
        bundle = ca_bundle()
        env = {"SSL_CERT_FILE": bundle, "PIP_CERT": bundle} if bundle else {}
        # The same checks either way: hashes required, no resolution, wheels only; uv compiles
        # bytecode as pip does by default.
        same = ["--no-deps", "--require-hashes", "--only-binary=:all:"]
        commands = {
            "pip": lambda python: [sys.executable, "-m", "pip", "--python", python, "install",
                                   "-q", *same],
            "uv": lambda python: [tool("uv"), "pip", "install", "--python", python, "-q", *same,
                                  "--compile-bytecode"],
        }  # fmt: skip
        for installer, command in commands.items():
            cache = {"PIP_CACHE_DIR": f"{tmp}/pip-cache", "UV_CACHE_DIR": f"{tmp}/uv-cache"}
            for run_ in ("cold", "warm"):
                venv = Path(tmp) / f"venv-{installer}-{run_}"
                sh(sys.executable, "-m", "venv", "--without-pip", str(venv))
                python = str(venv / "bin" / "python")
                results[f"{installer}_{run_}_s"], _ = timed(
                    sh, *command(python), *indexes, *files, env=env | cache
                )
        venv_python = str(Path(tmp) / "venv-pip-warm" / "bin" / "python")
        imports = "import torch, fastapi, uvicorn, prometheus_client"
        env = {"PYTHONDONTWRITEBYTECODE": "1"}
        sh(venv_python, "-c", imports)  # page cache warm
        results["import_compiled_s"], _ = timed(sh, venv_python, "-c", imports, env=env)
        sh("find", str(Path(tmp) / "venv-pip-warm"), "-name", "__pycache__", "-prune", "-exec",
           "rm", "-rf", "{}", "+")  # fmt: skip
        results["import_source_s"], _ = timed(sh, venv_python, "-c", imports, env=env)
    remove_images(req)
    return results


def docker_only_path(host: ImageHost) -> float:
    """Seconds from `cookiecutter` to the first correct prediction with Docker alone: bake,
    lock with `--target lock`, `docker compose up --build --wait`, predict (warm caches)."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        project = bake(tmp, host, "2.13.0", "cpu")  # cookiecutter, then the lock target
        port = free_port()
        name = "bench-docker-only"
        env = project.compose_env(port)
        compose = [docker(), "compose", "-p", name]
        try:
            sh(*compose, "up", "-d", "--build", "--wait", cwd=project.path, env=env)
            centers = project.class_centers(f"{project.path.name}:latest")
            body = json.dumps({"features": centers})
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("POST", "/predict", body, {"content-type": "application/json"})
            answer = json.loads(conn.getresponse().read())
            assert answer["predictions"] == list(range(len(centers))), answer
            elapsed = time.perf_counter() - started
        finally:
            sh(*compose, "down", "-v", "--rmi", "local", cwd=project.path, env=env)
    return elapsed


def run_cuda(host: ImageHost) -> dict:
    """The CUDA image (torch 2.14.1, CUDA 13.0): size against its floor, CUDA libraries twice."""
    with tempfile.TemporaryDirectory() as tmp:
        project = bake(tmp, host, "2.14.1", "cuda")
        build_s, image = timed(project.build, "runtime", "bench-cuda-runtime")
    venv = venv_bytes(image)
    found = cuda_libraries(image)
    twice = list(libraries_twice(found))
    vendored = [p for paths in found.values() for p in paths if TRITON_VENDORED_CUPTI in p]
    vendored_bytes = int(
        sh(
            docker(),
            "run",
            "--rm",
            "--entrypoint",
            "sh",
            image,
            "-c",
            "du -scb /opt/venv/lib/python3.11/site-packages"
            + TRITON_VENDORED_CUPTI
            + "* | tail -n 1",
        ).split()[0]
    )
    others = list(libraries_twice(found, ignore=TRITON_VENDORED_CUPTI))
    runtime_bytes = image_size(image)
    remove_images(image)  # ~6 GB: make room for the slim one
    with tempfile.TemporaryDirectory() as tmp:
        project = bake(tmp, host, "2.14.1", "cuda")
        slim = project.build("runtime-slim", "bench-cuda-slim")
    slim_twice = list(libraries_twice(cuda_libraries(slim)))
    slim_bytes = image_size(slim)
    remove_images(slim)
    return {
        "cuda_slim_bytes": slim_bytes,
        "cuda_slim_libs_twice": slim_twice,
        "cuda_build_s": build_s,
        "cuda_runtime_bytes": runtime_bytes,
        "cuda_venv_bytes": venv,
        "cuda_libs_twice": twice,
        "cuda_libs_twice_elsewhere": others,
        "cuda_triton_vendored_files": len(vendored),
        "cuda_triton_vendored_bytes": vendored_bytes,
    }


def cuda_table(r: dict) -> str:
    floor = r["base_bytes"] + r["cuda_venv_bytes"]
    ratio = r["cuda_runtime_bytes"] / floor
    rows = [
        ("CUDA runtime image (torch 2.14.1, CUDA 13.0)", mb(r["cuda_runtime_bytes"]), ""),
        (
            "CUDA runtime / floor (base + venv)",
            f"{ratio:.3f}",
            f"≤ {TARGETS['runtime_vs_floor']}: " + verdict(ratio <= TARGETS["runtime_vs_floor"]),
        ),
        (
            "CUDA libraries present twice",
            ", ".join(r["cuda_libs_twice"]) or "none",
            "none: " + verdict(not r["cuda_libs_twice"]),
        ),
        (
            "… of them outside Triton's vendored CUPTI",
            ", ".join(r["cuda_libs_twice_elsewhere"]) or "none",
            "",
        ),
        ("Cold build (cache pruned at the start of the run)", f"{r['cuda_build_s']:.1f} s", ""),
        ("CUDA runtime-slim image", mb(r["cuda_slim_bytes"]), ""),
        (
            "CUDA runtime-slim / floor",
            f"{r['cuda_slim_bytes'] / floor:.3f}",
            f"≤ {TARGETS['cuda_slim_vs_floor']}: "
            + verdict(r["cuda_slim_bytes"] / floor <= TARGETS["cuda_slim_vs_floor"]),
        ),
        (
            "CUDA libraries present twice in runtime-slim",
            ", ".join(r["cuda_slim_libs_twice"]) or "none",
            "none: " + verdict(not r["cuda_slim_libs_twice"]),
        ),
    ]
    note = (
        f"\nThe CUDA libraries present twice are CUPTI's: Triton (a torch dependency) vendors two "
        f"CUPTI builds for its proton profiler ({r['cuda_triton_vendored_files']} files, "
        f"{mb(r['cuda_triton_vendored_bytes'])}) beside the CUPTI of the `nvidia-cuda-cupti` wheel "
        "that torch's profiler loads. Both come from the locked wheels, and the default "
        "`runtime` keeps installed packages as they are, so its target is missed by that much; "
        "`runtime-slim` removes Triton's copies and meets it. No CUDA library comes from the "
        "base image, and none other is present twice.\n"
    )
    return (
        "\n## CUDA image\n\n| measure | value | target |\n| --- | --- | --- |\n"
        + "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
        + "\n"
        + note
    )


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def table(r: dict, smoke: bool, host: ImageHost) -> str:
    floor = r["base_bytes"] + r["venv_bytes"]
    vs_floor = r["runtime_bytes"] / floor
    smaller = 1 - r["runtime_bytes"] / r["naive_bytes"]
    share = r["source_rebuild_s"] / r["cold_build_s"]
    rows = [
        ("Runtime image", mb(r["runtime_bytes"]), ""),
        (
            "Floor: base image + venv",
            f"{mb(r['base_bytes'])} + {mb(r['venv_bytes'])} = {mb(floor)}",
            "",
        ),
        (
            "Runtime / floor",
            f"{vs_floor:.3f}",
            f"≤ {TARGETS['runtime_vs_floor']}: " + verdict(vs_floor <= TARGETS["runtime_vs_floor"]),
        ),
        ("runtime-slim image", mb(r["slim_bytes"]), ""),
        (
            "runtime-slim / floor",
            f"{r['slim_bytes'] / floor:.3f}",
            f"≤ {TARGETS['slim_vs_floor']}: "
            + verdict(r["slim_bytes"] / floor <= TARGETS["slim_vs_floor"]),
        ),
        ("Naive single-stage Poetry image", mb(r["naive_bytes"]), ""),
        (
            "Runtime smaller than naive by",
            f"{smaller:.0%}",
            f"≥ {TARGETS['smaller_than_naive']:.0%}: "
            + verdict(smaller >= TARGETS["smaller_than_naive"]),
        ),
        ("Cold build (runtime target)", f"{r['cold_build_s']:.1f} s", ""),
        ("Naive image build", f"{r['naive_build_s']:.1f} s", ""),
        (
            "Rebuild after a source-only change",
            f"{r['source_rebuild_s']:.1f} s ({share:.1%} of cold)",
            f"≤ {TARGETS['source_rebuild_share']:.0%}: "
            + verdict(share <= TARGETS["source_rebuild_share"]),
        ),
        ("Rebuild after adding one dependency", f"{r['dependency_rebuild_s']:.1f} s", ""),
        (
            "torch layer installed: cold / dependency rebuild",
            f"{yes_no(r['cold_torch_installed'])} / {yes_no(r['dependency_torch_installed'])}",
            "no on rebuild: " + verdict(not r["dependency_torch_installed"]),
        ),
        (
            "`docker run` to healthy",
            f"{r['healthy_s']:.1f} s",
            f"≤ {TARGETS['healthy_seconds']:.0f} s: "
            + verdict(r["healthy_s"] <= TARGETS["healthy_seconds"]),
        ),
        (
            "Docker only: `cookiecutter` → lock → `compose up --build` → first correct prediction",
            f"{r['docker_only_s']:.1f} s",
            f"≤ {TARGETS['docker_only_seconds']:.0f} s: "
            + verdict(r["docker_only_s"] <= TARGETS["docker_only_seconds"]),
        ),
        (
            "Install torch.txt + main.txt, cold cache: pip / uv",
            f"{r['pip_cold_s']:.1f} / {r['uv_cold_s']:.1f} s",
            "",
        ),
        (
            "… warm cache: pip / uv",
            f"{r['pip_warm_s']:.1f} / {r['uv_warm_s']:.1f} s",
            "",
        ),
        (
            "Import torch, fastapi, uvicorn: with bytecode / from source",
            f"{r['import_compiled_s']:.2f} / {r['import_source_s']:.2f} s",
            "",
        ),
        ("Predict latency p50 / p95 (1 row)", f"{r['p50_ms']:.1f} / {r['p95_ms']:.1f} ms", ""),
        ("Predict throughput (4 clients)", f"{r['rps']:.0f} req/s", ""),
    ]
    head = [
        "# Benchmark: generated CPU image (torch 2.13.0, Python 3.11)"
        + (" — smoke run" if smoke else ""),
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `benchmarks/run.py` on one machine:"
        f" {os.cpu_count()} cores, {platform.machine()}, Docker "
        + sh(docker(), "version", "--format", "{{.Server.Version}}").strip()
        + f". {host.network.describe()}. Cold = build cache pruned.",
        "",
        "| measure | value | target |",
        "| --- | --- | --- |",
    ]
    return "\n".join(head + [f"| {a} | {b} | {c} |" for a, b, c in rows]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="warm caches, few requests, no file")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--cuda", action="store_true", help="also measure the CUDA image")
    args = parser.parse_args()
    print(f"benchmark: {this_host().describe()}", file=sys.stderr)
    host = ImageHost.start()  # the engine answers, disk has room, offline: the wheel index runs
    try:
        results = run(host, args.smoke)
        results["docker_only_s"] = docker_only_path(host)
        text = table(results, args.smoke, host)
        print(text, flush=True)  # the CPU table, before the long CUDA part
        if args.cuda:
            results.update(run_cuda(host))
            text += cuda_table(results)
    finally:
        host.stop()
        remove_images("bench-runtime", "bench-slim", "bench-naive", "bench-cuda-runtime")
    if args.cuda:
        print(text)
    if not args.smoke:
        args.output.write_text(
            text + "\nRaw results:\n\n```json\n" + json.dumps(results, indent=2) + "\n```\n"
        )


if __name__ == "__main__":
    main()
