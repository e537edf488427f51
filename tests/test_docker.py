"""Build and run the generated images: one CPU and one CUDA project, Python 3.11.

These need a Docker engine; `ensure_engine` starts or installs one, and fails (never skips) when
it cannot. The torch wheels come from a local index (tests/wheel_index.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest
from conftest import TEMPLATE, sh
from docker_helpers import (
    DOCKER,
    TRITON_VENDORED_CUPTI,
    bake_and_lock,
    cuda_libraries,
    ensure_engine,
    ensure_space,
    free_port,
    libraries_twice,
    remove_images,
)
from wheel_index import WheelIndex

# scripts/test runs pytest with --dist loadscope: this whole module (images, then the benchmark
# smoke) runs on one worker, in order, while the other worker bakes.
pytestmark = pytest.mark.docker

VARIANTS = {
    # name: (answers, torch.__version__, torch.version.cuda)
    "cpu": ({"torch_version": "2.13.0", "accelerator": "cpu"}, "2.13.0+cpu", None),
    "cuda": ({"torch_version": "2.14.1", "accelerator": "cuda"}, "2.14.1+cu130", "13.0"),
}


@pytest.fixture(scope="module")
def wheel_index():
    ensure_engine()
    ensure_space()
    index = WheelIndex.from_this_machine()
    yield index.start()
    index.stop()


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request, wheel_index, tmp_path_factory):
    answers, torch_version, cuda = VARIANTS[request.param]
    project = bake_and_lock(
        tmp_path_factory.mktemp(request.param),
        wheel_index,
        project_name=f"Docker Check {request.param}",
        python_version="3.11",
        **answers,
    )
    image = project.build("runtime")
    yield project, image, torch_version, cuda
    # A CUDA image is ~6 GB: free the disk before the next variant builds.
    remove_images(image, f"{project.tag}-test", f"{project.path.name}:latest")


def docker_run(
    image: str, *args: str, entrypoint: str | None = None, volume: str | None = None
) -> str:
    cmd = [DOCKER, "run", "--rm"]
    if entrypoint:
        cmd += ["--entrypoint", entrypoint]
    if volume:
        cmd += ["-v", volume]
    return sh(*cmd, image, *args)


def test_torch_is_the_pinned_build(variant):
    _, image, torch_version, cuda = variant
    out = docker_run(
        image,
        "-c",
        "import json, torch; print(json.dumps([torch.__version__, torch.version.cuda]))",
        entrypoint="python",
    )
    assert json.loads(out) == [torch_version, cuda]


def test_runs_as_non_root_with_a_healthcheck(variant):
    _, image, *_ = variant
    assert docker_run(image, "-u", entrypoint="id").strip() != "0"
    config = json.loads(sh(DOCKER, "image", "inspect", image))[0]["Config"]
    assert config["User"] not in ("", "root", "0")
    assert config["Healthcheck"]["Test"][0] == "CMD"
    assert config["Entrypoint"][:2] == ["python", "-m"]


def test_training_writes_a_checkpoint(variant):
    _project, image, *_ = variant
    volume = f"tdt-artifacts-{uuid.uuid4().hex[:8]}"
    try:
        out = docker_run(image, "train", "--max-steps", "5", volume=f"{volume}:/app/artifacts")
        listing = docker_run(
            image, "-c", "ls -l /app/artifacts", entrypoint="sh", volume=f"{volume}:/app/artifacts"
        )
    finally:
        subprocess.run([DOCKER, "volume", "rm", "-f", volume], capture_output=True)
    assert "model.pt" in listing, out + listing


def test_no_cuda_library_is_installed_twice(variant):
    _, image, _, cuda = variant
    found = cuda_libraries(image)
    assert libraries_twice(found, ignore=TRITON_VENDORED_CUPTI) == {}
    outside_venv = [p for paths in found.values() for p in paths if not p.startswith("/opt/venv/")]
    assert outside_venv == []  # CUDA comes from the wheels only, never from the base image
    if cuda is None:
        assert found == {}


def test_compose_serves_predictions_and_cleans_up(variant):
    project, image, *_ = variant
    name = f"tdt-{uuid.uuid4().hex[:8]}"
    port = free_port()
    compose = [DOCKER, "compose", "-p", name, "-f", "compose.yaml"]
    env = {"API_PORT": str(port)}
    # The compose file builds the runtime image under its own tag; reuse the one built above.
    sh(DOCKER, "tag", image, f"{project.path.name}:latest")
    try:
        sh(
            *compose,
            "up",
            "-d",
            "--no-build",
            "--wait",
            "--wait-timeout",
            "180",
            cwd=project.path,
            env=env,
        )
        centers = json.loads(
            sh(
                *compose,
                "exec",
                "-T",
                "api",
                "python",
                "-c",
                f"import json; from {project.package}.data import class_centers; "
                "print(json.dumps(class_centers().tolist()))",
                cwd=project.path,
                env=env,
            )
        )
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict",
            data=json.dumps({"features": centers}).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.load(response)
        assert body["predictions"] == list(range(len(centers)))
        bad = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict",
            data=b'{"features": [[1]]}',
            headers={"content-type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(bad, timeout=30)
        assert error.value.code == 422
    finally:
        sh(*compose, "down", "-v", "--remove-orphans", cwd=project.path, env=env)
    time.sleep(1)
    left = sh(DOCKER, "ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={name}")
    assert left.strip() == ""


def test_project_tests_pass_inside_the_test_image(variant):
    project, *_ = variant
    image = project.build("test")
    out = sh(DOCKER, "run", "--rm", image)
    assert " passed" in out and " failed" not in out


# benchmarks/run.py runs end to end (warm caches, few requests) and prints its whole table.
# The numbers themselves are judged in docs/benchmarks.md, not here.
BENCHMARK_ROWS = [
    "Runtime / floor",
    "Runtime smaller than naive by",
    "Rebuild after a source-only change",
    "torch wheels fetched: cold / dependency rebuild",
    "`docker run` to healthy",
    "Predict latency p50 / p95",
    "Predict throughput",
]


def test_benchmark_smoke():
    table = sh(sys.executable, str(TEMPLATE / "benchmarks" / "run.py"), "--smoke")
    for row in BENCHMARK_ROWS:
        assert f"| {row}" in table, row
    # A dependency change must not fetch torch again, even in a smoke run.
    assert "| 0 on rebuild: met |" in table, table
