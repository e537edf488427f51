"""Docker engine, base images, the local wheel index and image builds for the `docker` tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from conftest import TEMPLATE, sh, tool
from wheel_index import pip_config

# The packaged client that scripts/ensure-docker.sh installs and checks: the first `docker` on
# PATH may be a bare one without buildx and compose, and this is read before the engine exists.
DOCKER = "/usr/bin/docker"
BASES = ["3.11:bookworm"]  # Debian packages give these Pythons; others stay bake-and-lint only


def ensure_engine() -> None:
    """Start (or install) a Docker engine; raises, never skips, when none can be had."""
    sh("bash", str(TEMPLATE / "scripts" / "ensure-docker.sh"), timeout=900)
    sh(
        "bash",
        str(TEMPLATE / "scripts" / "seed-base-images.sh"),
        *BASES,
        env={"DOCKER": DOCKER},
        timeout=900,
    )


def ensure_space() -> None:
    """Cap Docker's build cache and check the builds have room (scripts/ensure-docker-space.sh)."""
    sh("bash", str(TEMPLATE / "scripts" / "ensure-docker-space.sh"), env={"DOCKER": DOCKER})


# Triton vendors its own CUPTI builds for its proton profiler; torch's profiler uses the CUPTI of
# the nvidia-cuda-cupti wheel. Both come from the lock's wheels (see docs/benchmarks.md).
TRITON_VENDORED_CUPTI = "/triton/backends/nvidia/lib/cupti"
CUDA_PROBE = Path(__file__).with_name("image_probes") / "cuda_libraries.py"


def cuda_libraries(image: str) -> dict[str, list[str]]:
    """Every CUDA shared library in the image: {library: [paths]}."""
    probe = CUDA_PROBE.read_text()
    return json.loads(sh(DOCKER, "run", "--rm", "--entrypoint", "python", image, "-c", probe))


def libraries_twice(found: dict[str, list[str]], ignore: str | None = None) -> dict[str, list[str]]:
    """The libraries of cuda_libraries() found at more than one path, not counting paths that
    contain `ignore`."""
    counted = {
        lib: [p for p in paths if not (ignore and ignore in p)] for lib, paths in found.items()
    }
    return {lib: paths for lib, paths in counted.items() if len(paths) > 1}


def venv_bytes(image: str) -> int:
    return int(
        sh(DOCKER, "run", "--rm", "--entrypoint", "du", image, "-sb", "/opt/venv").split()[0]
    )


def remove_images(*tags: str) -> None:
    """Remove these tags and the dangling layers left behind; base images stay."""
    subprocess.run([DOCKER, "rmi", "-f", *tags], capture_output=True)
    subprocess.run([DOCKER, "image", "prune", "-f"], capture_output=True)


def ca_bundle() -> str:
    """The CA bundle this machine trusts (a TLS-intercepting proxy sits in front of PyPI here)."""
    for candidate in (
        pip_config().get("global.cert"),
        os.environ.get("REQUESTS_CA_BUNDLE"),
        "/etc/ssl/certs/ca-certificates.crt",
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    raise AssertionError("no CA bundle found for the ca-bundle build secret")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class BakedProject:
    path: Path
    package: str
    tag: str
    index_url: str

    def build(self, target: str = "runtime", tag: str | None = None) -> str:
        tag = tag or f"{self.tag}-{target}"
        sh(
            DOCKER,
            "build",
            "--network",
            "host",
            "--target",
            target,
            "-t",
            tag,
            "--secret",
            f"id=ca-bundle,src={ca_bundle()}",
            "--build-arg",
            f"PACKAGE_INDEX_URL={self.index_url}/simple/",
            ".",
            cwd=self.path,
            env={"DOCKER_BUILDKIT": "1"},
        )
        return tag


def bake_and_lock(output: Path, index_url: str, **answers: str) -> BakedProject:
    """Bake with the local torch index, then `poetry lock` against PyPI's simple API."""
    args = [f"{k}={v}" for k, v in answers.items()]
    sh(
        tool("cookiecutter"),
        "--no-input",
        "-o",
        str(output),
        str(TEMPLATE),
        *args,
        f"torch_index_url={index_url}/whl",
        "package_index_url=https://pypi.org/simple/",
    )
    (path,) = [p for p in output.iterdir() if p.is_dir()]
    sh(
        tool("poetry"),
        "lock",
        cwd=path,
        env={"REQUESTS_CA_BUNDLE": ca_bundle(), "POETRY_VIRTUALENVS_CREATE": "false"},
        timeout=600,
    )
    package = path.name.replace("-", "_")
    return BakedProject(path=path, package=package, tag=f"tdt-{path.name}", index_url=index_url)
