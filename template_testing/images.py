"""Bake a project, lock it and build its images, online or through the offline fallback."""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from torch_compat import PYPI_SIMPLE, TorchPlan, load

from .commands import TEMPLATE, sh, tool
from .engine import (
    DPKG_ARCH,
    HOST_MACHINE,
    docker,
    dpkg_arch,
    emulated_cpu_mounts,
    ensure_base_image,
    ensure_emulation,
    ensure_engine,
    ensure_space,
    missing_base_image,
    stand_in_repository,
)
from .network import Network, ca_bundle, this_host
from .wheel_index import WheelIndex

# Triton vendors its own CUPTI builds for its proton profiler; torch's profiler uses the CUPTI of
# the nvidia-cuda-cupti wheel. Both come from the lock's wheels (see docs/benchmarks.md).
TRITON_VENDORED_CUPTI = "/triton/backends/nvidia/lib/cupti"
CUDA_PROBE = Path(__file__).with_name("probes") / "cuda_libraries.py"


def host_platform() -> str:
    """The Docker platform this host runs natively: linux/amd64 or linux/arm64."""
    compat = load()
    (platform,) = [p for p in compat.platforms if compat.machine(p) == HOST_MACHINE]
    return platform


def build_platform(plan: TorchPlan) -> str:
    """The platform a test builds a plan for: the host's where the plan has it, else its first."""
    return host_platform() if host_platform() in plan.platforms else plan.platforms[0]


def image_machine(image: str) -> str:
    arch = sh(docker(), "image", "inspect", "--format", "{{.Architecture}}", image).strip()
    return {arch: machine for machine, arch in DPKG_ARCH.items()}[arch]


def run_flags(image: str) -> list[str]:
    """`docker run` flags for the image: none natively; under emulation its platform and an
    arm64 CPU description (engine.emulated_cpu_mounts)."""
    machine = image_machine(image)
    if machine == HOST_MACHINE:
        return []
    mounts = emulated_cpu_mounts(machine).items()
    return ["--platform", f"linux/{dpkg_arch(machine)}",
            *(arg for host, inside in mounts for arg in ("-v", f"{host}:{inside}:ro"))]  # fmt: skip


def docker_run(
    image: str, *args: str, entrypoint: str | None = None, volume: str | None = None
) -> str:
    """`docker run --rm` the image (emulated where it must be); its output."""
    cmd = [docker(), "run", "--rm", *run_flags(image)]
    if entrypoint:
        cmd += ["--entrypoint", entrypoint]
    if volume:
        cmd += ["-v", volume]
    return sh(*cmd, image, *args)


def cuda_libraries(image: str) -> dict[str, list[str]]:
    """Every CUDA shared library in the image: {library: [paths]}."""
    return json.loads(docker_run(image, "-c", CUDA_PROBE.read_text(), entrypoint="python"))


def libraries_twice(found: dict[str, list[str]], ignore: str | None = None) -> dict[str, list[str]]:
    """The libraries of cuda_libraries() found at more than one path, not counting paths that
    contain `ignore`."""
    counted = {
        lib: [p for p in paths if not (ignore and ignore in p)] for lib, paths in found.items()
    }
    return {lib: paths for lib, paths in counted.items() if len(paths) > 1}


def venv_bytes(image: str) -> int:
    return int(docker_run(image, "-sb", "/opt/venv", entrypoint="du").split()[0])


def image_size(tag: str) -> int:
    return int(sh(docker(), "image", "inspect", "--format", "{{.Size}}", tag).strip())


def train_into(image: str, volume: str, *args: str) -> str:
    """Run the image's training with the named volume as its artifacts folder; its output."""
    return docker_run(image, "train", *args, volume=f"{volume}:/app/artifacts")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def secret_args() -> list[str]:
    """The ca-bundle build secret, when this host trusts a CA bundle of its own."""
    bundle = ca_bundle()
    return ["--secret", f"id=ca-bundle,src={bundle}"] if bundle else []


@dataclass
class BakedProject:
    path: Path
    package: str
    tag: str
    network: Network
    platform: str  # the Docker platform its images are built for, e.g. linux/arm64
    torch_build: str | None = None  # cpu+cuda: the TORCH_BUILD argument (cpu, cu130, ...)

    @property
    def plan(self) -> TorchPlan:
        """The torch build the project was baked with (its answers file)."""
        answers = json.loads((self.path / ".cookiecutter.json").read_text())["cookiecutter"]
        return load().plan(answers)

    def class_centers(self, image: str) -> list[list[float]]:
        """The class centres of the project's data, computed in `image`: a point at centre i
        must be predicted as class i."""
        probe = (
            f"import json; from {self.package}.data import class_centers; "
            f"from {self.package}.model import N_CLASSES, N_FEATURES; "
            "print(json.dumps(class_centers(N_CLASSES, N_FEATURES).tolist()))"
        )
        return json.loads(docker_run(image, "-c", probe, entrypoint="python"))

    def build(self, target: str = "runtime", tag: str | None = None, **build_args: str) -> str:
        tag = tag or f"{self.tag}-{target}"
        self.build_log(target, tag, **build_args)
        return tag

    def build_log(self, target: str, tag: str, **build_args: str) -> str:
        """Build `target` as `tag`; return BuildKit's plain progress log."""
        if self.torch_build:
            build_args = {"TORCH_BUILD": self.torch_build, **build_args}
        args = [f"--build-arg={name}={value}" for name, value in build_args.items()]
        return self.docker_build("--target", target, "-t", tag, *self.platform_args(), *args)

    @property
    def emulated(self) -> bool:
        return self.platform != host_platform()

    def platform_args(self) -> list[str]:
        """Build for the project's platform; offline, another architecture's base image is
        the Debian stand-in of engine.stand_in_repository (through the PYTHON_IMAGE argument)."""
        if not self.emulated:
            return []
        args = ["--platform", self.platform]
        if stand_in := self.stand_in_python_image:
            args.append(f"--build-arg=PYTHON_IMAGE={stand_in}")
        return args

    @property
    def stand_in_python_image(self) -> str | None:
        """Offline and emulated: the Debian stand-in's repository for the build's PYTHON_IMAGE."""
        if self.emulated and self.network.offline:
            return stand_in_repository(self.platform.split("/")[1])
        return None

    def compose_env(self, api_port: int) -> dict[str, str]:
        """The environment compose.yaml reads: the API port, and this host's CA bundle and build
        network, so `docker compose build` works here as `docker build` does. The indexes are
        the project's answers, compose.yaml's defaults."""
        env = {
            "API_PORT": str(api_port),
            "CA_BUNDLE": ca_bundle() or "",
            "BUILD_NETWORK": "host" if self.network.offline else "default",
        }
        if self.torch_build:  # cpu+cuda: compose.yaml passes it on
            env["TORCH_BUILD"] = self.torch_build
        if self.emulated:  # compose builds and runs for the project's platform
            env["DOCKER_DEFAULT_PLATFORM"] = self.platform
            if stand_in := self.stand_in_python_image:
                env["PYTHON_IMAGE"] = stand_in
        return env

    def compose_files(self) -> list[str]:
        """compose.yaml, and under emulation an override that gives every service the arm64 CPU
        description (run_flags), written beside it."""
        if not self.emulated:
            return ["-f", "compose.yaml"]
        mounts = emulated_cpu_mounts(load().machine(self.platform)).items()
        mount = {"volumes": [f"{host}:{inside}:ro" for host, inside in mounts]}
        override = self.path / "compose.emulated.yaml"
        override.write_text(json.dumps({"services": {"train": mount, "api": mount}}))
        return ["-f", "compose.yaml", "-f", override.name]

    @property
    def lock_file(self) -> Path:
        return self.path / f"{self.plan.package_manager}.lock"  # poetry.lock or uv.lock

    def lock(self) -> None:
        """Write the lock the way the README shows users without Poetry or uv: Docker alone
        (the command runs with neither on PATH)."""
        self.docker_build("--target", "lock", "--output", f"type=local,dest={self.path}")
        assert self.lock_file.is_file(), f"the lock target wrote no {self.lock_file.name}"

    def docker_build(self, *args: str) -> str:
        # Offline, the torch index listens on the host's loopback.
        net = ["--network", "host"] if self.network.offline else []
        return sh(
            docker(), "build", "--progress", "plain", *net, *secret_args(), *args, ".",
            cwd=self.path, env={"DOCKER_BUILDKIT": "1", "PATH": path_without("poetry", "uv")},
            with_stderr=True,
        )  # fmt: skip


def path_without(*programs: str) -> str:
    """$PATH without the folders that hold any of `programs`."""
    folders = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(
        f for f in folders if f and not any((Path(f) / p).exists() for p in programs)
    )


def step_ran(log: str, marker: str) -> bool:
    """Whether the build step whose command contains `marker` ran rather than came from cache."""
    steps = re.findall(r"^#(\d+) \[[^\]]+\] .*" + re.escape(marker), log, re.MULTILINE)
    assert steps, f"no build step mentions {marker!r}"
    return any(not re.search(rf"^#{n} CACHED$", log, re.MULTILINE) for n in steps)


def bake_and_lock(
    output: Path,
    network: Network,
    torch_index: str | None = None,
    platform: str | None = None,
    **answers: str,
) -> BakedProject:
    """Bake with these answers, then lock with Docker alone. Online, with the template's index
    defaults; offline, torch from `torch_index` and the rest from PyPI's simple API."""
    if network.offline:
        # A proxy may serve PyPI's simple API but not its JSON API, which Poetry's default uses.
        answers = {
            "torch_index_url": torch_index or network.torch_index,
            "package_index_url": PYPI_SIMPLE,
            **answers,
        }
    args = [f"{k}={v}" for k, v in answers.items()]
    sh(tool("cookiecutter"), "--no-input", "-o", str(output), str(TEMPLATE), *args)
    (path,) = [p for p in output.iterdir() if p.is_dir()]
    package = path.name.replace("-", "_")
    project = BakedProject(path=path, package=package, tag=f"tdt-{path.name}", network=network,
                           platform=platform or host_platform())  # fmt: skip
    project.lock()
    return project


@dataclass
class ImageHost:
    """This host, ready to build baked projects: the engine answers, there is disk room, and,
    offline, the local torch index runs (unless TDT_OFFLINE_WHEELS names an index URL)."""

    network: Network
    index: WheelIndex | None = None

    @classmethod
    def start(cls, network: Network | None = None) -> ImageHost:
        network = network or this_host()
        ensure_engine()
        ensure_space()
        index = None
        if network.offline and not network.torch_index:
            index = WheelIndex(network.wheel_folders)
            index.start()
        return cls(network, index)

    def stop(self) -> None:
        if self.index:
            self.index.stop()

    @property
    def torch_index(self) -> str | None:
        return f"{self.index.url}/whl" if self.index else self.network.torch_index

    def cannot_build(self, plan: TorchPlan) -> str | None:
        """Why this host cannot have the plan's base image or torch wheels, or None."""
        if not self.network.offline:
            return None
        platform = build_platform(plan)
        machine, arch = load().machine(platform), platform.split("/")[1]
        reasons = [missing_base_image(self.network, plan.python, plan.debian_release, arch)]
        for variant in plan.variants if self.index else ():
            if missing := self.index.missing(variant, machine):
                reasons.append(
                    f"no {variant.index_suffix} wheels of {', '.join(missing)} for Python "
                    f"{plan.python} on {machine}: the PyTorch index cannot be reached, PyPI's "
                    "files are another build, and TDT_OFFLINE_WHEELS has none"
                )
        return "; ".join(r for r in reasons if r) or None

    def servable_platforms(self, plan: TorchPlan) -> tuple[str, ...]:
        """The plan's platforms whose torch wheels (every build) this host's index can serve."""
        if not self.index:
            return plan.platforms
        compat = load()
        return tuple(
            p for p in plan.platforms
            if not any(self.index.missing(v, compat.machine(p)) for v in plan.variants)
        )  # fmt: skip

    def bake(self, output: Path, plan: TorchPlan, **answers: str) -> BakedProject:
        platform = build_platform(plan)
        if platform != host_platform():  # said aloud: slow, and only where no native runner
            print(f"template_testing: building {platform} under QEMU user emulation")
        ensure_emulation(load().machine(platform))
        ensure_base_image(self.network, plan.python, plan.debian_release, platform.split("/")[1])
        servable = self.servable_platforms(plan)
        if plan.package_manager == "uv" and servable != plan.platforms:
            # uv's required-environments refuse a lock without wheels for every platform.
            answers["platforms"] = ",".join(servable)
            print(
                "template_testing: offline, the local torch index has wheels for "
                f"{answers['platforms']} only; baking this uv project for those platforms"
            )
        return bake_and_lock(output, self.network, self.torch_index, platform, **answers)
