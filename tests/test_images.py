"""Build, run and check the image of each combination in combinations.BUILDS.

Online by default: torch from the PyTorch index, base images from their registry, the engine
that `docker` talks to. Where those cannot be reached (or TDT_OFFLINE=1), the offline fallback
(template_testing) builds what this host can have; a combination it cannot have is skipped with
the reason, and the summary's "image builds" section lists what was built and what was not.
A build answered for linux/arm64 alone is built for arm64: natively on an arm64 host, under QEMU
user emulation on an x86_64 one (template_testing says so when it does).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from combinations import BUILDS, build_id, with_defaults

from template_testing import timing
from template_testing.commands import TEMPLATE, sh, tool
from template_testing.engine import docker, ensure_space, remove_images
from template_testing.images import (
    TRITON_VENDORED_CUPTI,
    BakedProject,
    ImageHost,
    cuda_libraries,
    docker_run,
    free_port,
    libraries_twice,
    run_flags,
    train_into,
)
from torch_compat import TorchPlan, load

SEAMS = Path(__file__).parent / "seams"
# scripts/test runs pytest with --dist loadscope: this whole module runs on one worker, in
# order, one build at a time, while the other worker bakes.
pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def host():
    with timing.timed("image host: engine, disk room, offline wheel index", 300):
        image_host = ImageHost.start()
    yield image_host
    image_host.stop()


def answers_of(build: dict[str, str]) -> dict[str, str]:
    name = re.sub(r"[^a-z0-9]+", " ", build_id(build))  # a valid slug: letters, digits, dashes
    return {"project_name": f"Image Check {name}", **with_defaults(build)}


# Each image's budget in the timing summary (seconds, per torch build of the lock), measured on
# 2 cores with warm caches and with headroom for a cold one (docs/test-timings.md).
IMAGE_BUDGET_S = {"cpu": 420, "cuda": 720, "emulated": 900, "slow layer": 240, "text model": 120}
# The project's slow test layer (real servers and processes) runs natively in the first image
# built of each package manager x accelerator; every image runs the fast layer.
SLOW_LAYER_RAN: set[tuple[str, str]] = set()


def family(plan: TorchPlan) -> tuple[str, str]:
    return plan.package_manager, plan.accelerator


@pytest.mark.parametrize("build", BUILDS, ids=build_id)
def test_image_builds_and_runs(host, build, tmp_path, record_property):
    answers = answers_of(build)
    plan = load().plan(answers)
    if reason := host.cannot_build(plan):
        pytest.skip(f"cannot be built on this host: {reason}")
    ensure_space()  # a CUDA image is ~6 GB, its build cache more: make room first
    project = host.bake(tmp_path, plan, **answers)
    slow_layer = not project.emulated and family(plan) not in SLOW_LAYER_RAN
    kinds = [
        "emulated" if project.emulated else ("cuda" if v.cuda else "cpu") for v in plan.variants
    ]
    budget = sum(IMAGE_BUDGET_S[k] for k in kinds) + slow_layer * IMAGE_BUDGET_S["slow layer"]
    budget += bool(build.get("text_model")) * IMAGE_BUDGET_S["text model"]
    with timing.timed(f"image: {build_id(build)}", budget):
        check_lock_carries_every_platform(project, host)
        for variant in plan.variants:  # cpu+cuda: each build of the one lock, by TORCH_BUILD
            if variant is not plan:
                project.torch_build = variant.index_suffix
                print(f"{build_id(build)}: the {variant.index_suffix} build of the lock")
                ensure_space()
            if project.emulated:
                check_emulated_image(project, variant)
            else:
                check_images(project, variant, compiled=bool(build.get("compiled")),
                             slow_layer=slow_layer,
                             text_model=bool(build.get("text_model")))  # fmt: skip
            slow_layer = False  # once per image test (cpu+cuda: its first build)
    if not project.emulated and family(plan) not in SLOW_LAYER_RAN:
        SLOW_LAYER_RAN.add(family(plan))
        record_property("slow_layer", "/".join(family(plan)))


def check_images(
    project: BakedProject, plan: TorchPlan, compiled: bool, slow_layer: bool, text_model: bool
) -> None:
    """Build the project's runtime, test and slim images of one torch build and check them:
    what only an image can show, and the project's fast test layer against each venv (and its
    slow layer where asked); with `text_model`, then another model in the seam."""
    images = [f"{project.tag}-{t}" for t in ("runtime", "test", "runtime-slim", "test-slim",
                                              "runtime-compile")]  # fmt: skip
    try:
        image = project.build("runtime")
        check_runtime_image(image, project, plan)
        check_compile_is_refused_without_a_compiler(image)
        check_the_gpu_check_says_why_not(image, project, plan)
        check_training_writes_a_checkpoint(image)
        check_compose_serves_predictions(project)
        check_project_tests_pass_in_the_test_stage(project, slow_layer=slow_layer)
        remove_images(*images[:2], f"{project.path.name}:latest")  # make room for the slim pair

        slim = project.build("runtime-slim")
        check_torch_build(slim, plan)
        check_cuda_libraries(slim, plan, vendored_cupti=False)
        check_serves_predictions(slim, project)  # trains a checkpoint with it first
        check_project_tests_pass_in_the_test_stage(project, venv="slim-venv")
        if compiled:
            remove_images(*images[2:])
            check_compiled_serving(project)
        if text_model:
            check_a_text_model_in_the_image(project)
    finally:
        remove_images(*images, f"{project.path.name}:latest")


def check_runtime_image(image: str, project: BakedProject, plan: TorchPlan) -> None:
    """What the runtime image is, on any platform: built for it, the torch build asked for and
    only its libraries, no package tool, non-root with a healthcheck."""
    check_platform(image, project)
    check_torch_build(image, plan)
    check_no_nvidia_package_in_a_cpu_build(image, plan)
    check_no_package_tool_in_the_runtime(image)
    check_runs_as_non_root_with_a_healthcheck(image)
    check_cuda_libraries(image, plan)


def check_emulated_image(project: BakedProject, plan: TorchPlan) -> None:
    """Under QEMU (several times slower), only what emulation must prove: the runtime image
    builds for the other platform with its wheels, trains and serves correct predictions. The
    compose run, the test stages and runtime-slim are checked natively, on GitHub's arm runners
    (the template's workflow) and in this run's native images."""
    print(f"{project.path.name}: emulated {project.platform}: runtime image only (compose, test "
          "stages and runtime-slim run on native runners)")  # fmt: skip
    image = f"{project.tag}-runtime"
    try:
        project.build("runtime", image)
        check_runtime_image(image, project, plan)
        check_serves_predictions(image, project)  # trains a checkpoint with it first
    finally:
        remove_images(image)


def test_compose_builds_from_the_mirror_answers(host, tmp_path):
    """`docker compose config` of a project generated with mirrors, no index variable set: the
    build arguments are the answers."""
    mirrors = {
        "torch_index_url": "https://mirror.example.com/pytorch/whl",
        "package_index_url": "https://mirror.example.com/pypi/simple/",
    }
    args = [f"{key}={value}" for key, value in mirrors.items()]
    sh(tool("cookiecutter"), "--no-input", "-o", str(tmp_path), str(TEMPLATE), *args)
    (project,) = tmp_path.iterdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PACKAGE_INDEX_URL", "TORCH_INDEX_URL", "PYTHON_IMAGE")
    }
    done = subprocess.run(
        [docker(), "compose", "config", "--format", "json"], cwd=project, env=env,
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    build = json.loads(done.stdout)["services"]["train"]["build"]
    assert build["args"] == {
        "PACKAGE_INDEX_URL": mirrors["package_index_url"],
        "TORCH_INDEX_URL": mirrors["torch_index_url"],
        "PYTHON_IMAGE": "python",  # Docker Hub's; a mirror's through the environment
    }


def check_torch_build(image: str, plan: TorchPlan) -> None:
    packages = list(plan.packages)
    probe = (
        "import importlib.metadata as m, json, torch; print(json.dumps([torch.__version__, "
        f"torch.version.cuda, {{p: m.version(p) for p in {packages!r}}}]))"
    )
    version, cuda, installed = json.loads(docker_run(image, "-c", probe, entrypoint="python"))
    assert version == f"{plan.torch}+{plan.index_suffix}"
    assert cuda == plan.cuda
    assert {name: v.split("+")[0] for name, v in installed.items()} == plan.packages


# How much longer anything takes under QEMU user emulation than natively (seen: 3 to 10 times).
EMULATION_SLOWDOWN = 8


def slowdown(image: str) -> int:
    return EMULATION_SLOWDOWN if run_flags(image) else 1


def check_platform(image: str, project: BakedProject) -> None:
    """Built for the project's platform: Python in the image says so (emulated or not)."""
    probe = "import platform; print(platform.machine())"
    machine = docker_run(image, "-c", probe, entrypoint="python").strip()
    assert machine == load().machine(project.platform), (machine, project.platform)


def check_lock_carries_every_platform(project: BakedProject, host: ImageHost) -> None:
    """The lock holds torch wheels for the project's Python on every platform answered, of
    every build (one lock; each build installs its own). Offline, only the platforms whose
    wheels the local index can serve: they are what the lock could see."""
    plan, compat = project.plan, load()
    machines = [compat.machine(p) for p in host.servable_platforms(plan)]
    assert compat.machine(project.platform) in machines
    cp = "cp" + plan.python.replace(".", "")
    for variant in plan.variants:
        files = locked_torch_wheels(project, variant)
        for machine in machines:
            assert [f for f in files if f"-{cp}-" in f and machine in f], (machine, files)


def locked_torch_wheels(project: BakedProject, plan: TorchPlan) -> list[str]:
    """The file names of the wheels the lock holds for the plan's torch build (its index)."""
    lock = tomllib.loads(project.lock_file.read_text())
    torch = [p for p in lock["package"] if p["name"] == "torch"]
    if plan.package_manager == "uv":
        return [
            urllib.parse.unquote(wheel["url"].rsplit("/", 1)[1])
            for p in torch
            if p["source"]["registry"].rstrip("/").endswith(f"/{plan.index_suffix}")
            for wheel in p["wheels"]
        ]
    return [
        f["file"] for p in torch if p["source"]["reference"] == plan.source_name for f in p["files"]
    ]


def check_no_nvidia_package_in_a_cpu_build(image: str, plan: TorchPlan) -> None:
    """A CPU build installs no nvidia-* (or cuda-*) distribution, on either architecture: PyPI's
    own torch is the CUDA build on x86_64 and, from 2.11, on aarch64."""
    probe = "import importlib.metadata as m; print(' '.join(d.name for d in m.distributions()))"
    names = docker_run(image, "-c", probe, entrypoint="python").split()
    gpu = [n for n in names if n.lower().startswith(("nvidia", "cuda-", "triton"))]
    assert "torch" in names
    if plan.cuda is None:
        assert gpu == [], gpu
    else:
        assert any(n.lower().startswith("nvidia") for n in gpu), names


def check_no_package_tool_in_the_runtime(image: str) -> None:
    """The runtime's Python imports neither pip, Poetry nor uv, and no uv or Poetry is on PATH:
    they stay in the build stages."""
    probe = (
        "import importlib.util as u, shutil; tools = ('pip', 'poetry', 'uv'); "
        "print([t for t in tools if u.find_spec(t)] + [t for t in tools[1:] if shutil.which(t)])"
    )
    assert docker_run(image, "-c", probe, entrypoint="python").strip() == "[]"


def check_the_gpu_check_says_why_not(image: str, project: BakedProject, plan: TorchPlan) -> None:
    """No GPU here: a CUDA image names the missing driver (a CPU one its build) at start-up."""
    probe = f"from {project.package}.gpu import Accelerator; print(Accelerator.detect().problem)"
    problem = docker_run(image, "-c", probe, entrypoint="python")
    expected = "no NVIDIA driver is visible" if plan.cuda else "CPU-only build"
    assert expected in problem, problem


def check_runs_as_non_root_with_a_healthcheck(image: str) -> None:
    assert docker_run(image, "-u", entrypoint="id").strip() != "0"
    config = json.loads(sh(docker(), "image", "inspect", image))[0]["Config"]
    assert config["User"] not in ("", "root", "0")
    assert config["Healthcheck"]["Test"][0] == "CMD"
    assert config["Entrypoint"][:2] == ["python", "-m"]


def check_training_writes_a_checkpoint(image: str) -> None:
    volume = f"tdt-artifacts-{uuid.uuid4().hex[:8]}"
    try:
        out = train_into(image, volume, "--max-steps", "5")
        listing = docker_run(
            image, "-c", "ls -l /app/artifacts", entrypoint="sh", volume=f"{volume}:/app/artifacts"
        )
    finally:
        subprocess.run([docker(), "volume", "rm", "-f", volume], capture_output=True)
    assert "model.pt" in listing, out + listing


def check_cuda_libraries(image: str, plan: TorchPlan, vendored_cupti: bool = True) -> None:
    """No CUDA library twice (the runtime keeps Triton's vendored CUPTI, runtime-slim does not),
    none outside the venv, none at all in a CPU image."""
    found = cuda_libraries(image)
    assert libraries_twice(found, ignore=TRITON_VENDORED_CUPTI if vendored_cupti else None) == {}
    outside_venv = [p for paths in found.values() for p in paths if not p.startswith("/opt/venv/")]
    assert outside_venv == []  # CUDA comes from the wheels only, never from the base image
    if plan.cuda is None:
        assert found == {}


def check_compose_serves_predictions(project: BakedProject) -> None:
    """compose builds with this host's proxy settings (CA bundle, indexes) from the environment,
    trains, serves to healthy with correct predictions, and leaves nothing behind."""
    name = f"tdt-{uuid.uuid4().hex[:8]}"
    port = free_port()
    compose = [docker(), "compose", "-p", name, *project.compose_files()]
    env = project.compose_env(port)
    config = json.loads(sh(*compose, "config", "--format", "json", cwd=project.path, env=env))
    build, plan = config["services"]["train"]["build"], project.plan
    assert build["args"]["PACKAGE_INDEX_URL"] == plan.package_index
    if plan.package_manager == "poetry":
        assert build["args"]["TORCH_INDEX_URL"] == plan.index_base
    assert build["args"].get("TORCH_BUILD") == project.torch_build
    assert build["secrets"][0]["source"] == "ca-bundle"
    try:
        sh(*compose, "build", cwd=project.path, env=env)  # warm: the runtime image was just built
        wait = str(180 * (EMULATION_SLOWDOWN if project.emulated else 1))
        up = [*compose, "up", "-d", "--no-build", "--wait", "--wait-timeout", wait]
        sh(*up, cwd=project.path, env=env)
        centers = project.class_centers(f"{project.path.name}:latest")
        assert post_predict(port, {"features": centers}) == (200, list(range(len(centers))))
        assert post_predict(port, {"features": [[1]]})[0] == 422
    finally:
        sh(*compose, "down", "-v", "--remove-orphans", cwd=project.path, env=env)
    time.sleep(1)
    left = sh(docker(), "ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={name}")
    assert left.strip() == ""


def post_predict(port: int, body: dict) -> tuple[int, list[int] | None]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/predict",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)["predictions"]
    except urllib.error.HTTPError as error:
        return error.code, None


def check_compile_is_refused_without_a_compiler(image: str) -> None:
    cmd = [docker(), "run", "--rm", *run_flags(image), "-e", "TORCH_COMPILE=1", image]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120 * slowdown(image))
    assert done.returncode == 1, done.stderr[-2000:]
    assert "runtime-compile" in done.stderr and "Traceback" not in done.stderr, done.stderr


def check_compiled_serving(project: BakedProject) -> None:
    """The runtime-compile target serves through torch.compile (compiled before readiness)."""
    image = project.build("runtime-compile")
    readiness = check_serves_predictions(image, project, ready_within_s=300)
    assert readiness["compiled"] is True, readiness


@contextlib.contextmanager
def serving(image: str, ready_within_s: int = 120) -> Iterator[int]:
    """`docker run` the image on a checkpoint it trained (3 epochs); yields its port once the
    container is healthy."""
    volume = f"tdt-artifacts-{uuid.uuid4().hex[:8]}"
    port = free_port()
    container = ""
    try:
        train_into(image, volume, "--epochs", "3")
        container = sh(docker(), "run", "-d", *run_flags(image), "-p", f"127.0.0.1:{port}:8000",
                       "-v", f"{volume}:/app/artifacts:ro", image).strip()  # fmt: skip
        deadline = time.monotonic() + ready_within_s * slowdown(image)
        while (
            sh(docker(), "inspect", "--format", "{{.State.Health.Status}}", container).strip()
            != "healthy"
        ):
            assert time.monotonic() < deadline, sh(docker(), "logs", container, with_stderr=True)
            time.sleep(0.5)
        yield port
    finally:
        if container:
            subprocess.run([docker(), "rm", "-f", container], capture_output=True)
        subprocess.run([docker(), "volume", "rm", "-f", volume], capture_output=True)


def check_serves_predictions(image: str, project: BakedProject, ready_within_s: int = 120) -> dict:
    """The image serves a checkpoint it trained: ready, with correct predictions. Returns what
    /readyz says."""
    with serving(image, ready_within_s) as port:
        centers = project.class_centers(image)
        assert post_predict(port, {"features": centers}) == (200, list(range(len(centers))))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as ready:
            return json.load(ready)


def check_a_text_model_in_the_image(project: BakedProject) -> None:
    """The seam in an image: model.py swapped for the seam test's text classifier (BYTES in and
    out; only the source layers rebuild). It trains and serves in the runtime image, /predict
    and the Open Inference Protocol carry its strings, and the project's fast layer passes in
    the test stage."""
    shutil.copyfile(SEAMS / "text_model.py", project.path / "src" / project.package / "model.py")
    image = project.build("runtime", f"{project.tag}-text")
    try:
        with serving(image) as port:
            texts = ["the film was good and lovely", "a dull plot and an awful cast"]
            answer = post_json(port, "/predict", {"text": texts})
            assert answer["label_name"] == ["kind", "unkind"], answer
            oip = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": texts}]}
            outputs = post_json(port, "/v2/models/reviews/infer", oip)["outputs"]
            assert {o["name"]: o["data"] for o in outputs}["label_name"] == ["kind", "unkind"]
        check_project_tests_pass_in_the_test_stage(project)
        print(f"{project.path.name}: the text model (BYTES) trained, served and tested in it")
    finally:
        remove_images(image)


def post_json(port: int, path: str, body: dict) -> dict:
    url, data = f"http://127.0.0.1:{port}{path}", json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def check_project_tests_pass_in_the_test_stage(
    project: BakedProject, venv: str = "builder", slow_layer: bool = False
) -> None:
    """The project's fast test layer (and its slow one, where asked), run against the runtime's
    venv (builder) or runtime-slim's."""
    suffix = "" if venv == "builder" else "-slim"
    image = project.build("test", f"{project.tag}-test{suffix}", TEST_VENV=venv)
    layers = [[], ["-m", "slow"]] if slow_layer else [[]]
    for args in layers:
        out = docker_run(image, *args)
        assert " passed" in out and " failed" not in out and " error" not in out, out[-3000:]
