"""The Docker engine the image tests use: `docker` on PATH (or $DOCKER), talking to the local
engine or to $DOCKER_HOST, with the buildx and compose plugins.

A missing engine fails with one message that says how to get one. Only under CI=true, or with
TDT_INSTALL_ENGINE=1, do the tests install one themselves (scripts/ensure-docker.sh: Debian's
docker.io with buildx and compose, on a Debian or Ubuntu machine, as root).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from .commands import TEMPLATE, sh
from .network import Network

INSTALL_ENGINE = "TDT_INSTALL_ENGINE"
SCRIPTS = TEMPLATE / "scripts"
# Offline stand-ins for python:X.Y-slim-RELEASE: the Debian release whose python3 is X.Y.
DEBIAN_PYTHON = {"3.11": "bookworm", "3.13": "trixie"}
HOST_MACHINE = platform.machine()  # x86_64, aarch64: what runs without emulation
# QEMU 7.2 shows emulated arm64 programs the x86 host's /proc/cpuinfo, on which CUDA torch
# segfaults at import, and the host's /sys/devices/system/cpu, which lacks the MIDR_EL1 entry the
# CUDA aarch64 build's oneDNN reads (it then prints "Can't open MIDR_EL1 sysfs entry" to stderr
# in every process). Emulated test containers get arm64 ones (a Neoverse N1's) instead.
ARM64_CPUINFO = Path(__file__).with_name("probes") / "arm64-cpuinfo"  # one CPU's entry
NEOVERSE_N1_MIDR = "0x00000000413fd0c1"
EMULATED_CPU = Path("/tmp/tdt-emulated-cpu")


class EngineMissing(AssertionError):
    """No usable Docker engine; the message says how to get one."""


def docker() -> str:
    """The Docker client: $DOCKER, else the first `docker` on PATH (looked up on each call: the
    tests may have just installed it)."""
    return os.environ.get("DOCKER") or shutil.which("docker") or "docker"


def engine_problems(client: str | None = None) -> list[str]:
    """What is missing for the image tests; empty when the engine and both plugins answer."""
    client = client or docker()
    checks = {
        "a Docker engine that answers `docker info`": ["info"],
        "the buildx plugin (`docker buildx`)": ["buildx", "version"],
        "the compose plugin (`docker compose`)": ["compose", "version"],
    }
    problems = []
    for what, args in checks.items():
        try:
            done = subprocess.run([client, *args], capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return [f"no Docker client at {client!r}"]
        if done.returncode != 0:
            problems.append(what)
    return problems


def may_install(env: Mapping[str, str]) -> bool:
    return env.get("CI", "").lower() == "true" or env.get(INSTALL_ENGINE) == "1"


def ensure_engine(env: Mapping[str, str] = os.environ, client: str | None = None) -> None:
    """Make sure the engine answers; install one only where allowed. Raises, never skips."""
    problems = engine_problems(client)
    if not problems:
        return
    if not may_install(env):
        raise EngineMissing(
            f"the image tests need {', '.join(problems)} (client: {client or docker()}). "
            "Install Docker Desktop, or Docker Engine with the buildx and compose plugins "
            "(https://docs.docker.com/engine/install/), or point DOCKER_HOST at one; "
            f"on a disposable Debian or Ubuntu machine, {INSTALL_ENGINE}=1 lets the tests "
            "install one (scripts/ensure-docker.sh, as root)."
        )
    print(f"template_testing: installing a Docker engine ({', '.join(problems)} missing)")
    sh("bash", str(SCRIPTS / "ensure-docker.sh"), timeout=900)
    problems = engine_problems(client)
    if problems:
        raise EngineMissing(f"installed a Docker engine, but still missing: {problems}")


def emulated_cpu_mounts(machine: str) -> dict[str, str]:
    """{host path: container path} giving emulated `machine` containers its own CPU description,
    for as many CPUs as this host has (written once per process)."""
    assert machine == "aarch64", f"no CPU description for emulated {machine}"
    cpus = os.cpu_count() or 1
    sys_cpu = EMULATED_CPU / f"sys-cpu-{cpus}"
    cpuinfo = EMULATED_CPU / f"cpuinfo-{cpus}"
    if not cpuinfo.is_file():
        block = ARM64_CPUINFO.read_text()
        for n in range(cpus):
            midr = sys_cpu / f"cpu{n}" / "regs" / "identification" / "midr_el1"
            midr.parent.mkdir(parents=True, exist_ok=True)
            midr.write_text(NEOVERSE_N1_MIDR + "\n")
        for name in ("possible", "present", "online"):
            (sys_cpu / name).write_text(f"0-{cpus - 1}\n" if cpus > 1 else "0\n")
        (sys_cpu / "offline").write_text("\n")
        partial = cpuinfo.with_suffix(".partial")
        partial.write_text("\n".join(block.format(n=n) for n in range(cpus)))
        partial.rename(cpuinfo)  # last: its presence says the rest is written
    return {str(cpuinfo): "/proc/cpuinfo", str(sys_cpu): "/sys/devices/system/cpu"}


def emulation_problem(machine: str) -> str | None:
    """Why containers of `machine` cannot run here, or None (native, or a QEMU handler)."""
    if machine == HOST_MACHINE:
        return None
    entry = Path(f"/proc/sys/fs/binfmt_misc/qemu-{machine}")
    if entry.is_file() and entry.read_text().splitlines()[:1] == ["enabled"]:
        return None
    return f"no QEMU binfmt handler for {machine} on this {HOST_MACHINE} host"


def ensure_emulation(machine: str, env: Mapping[str, str] = os.environ) -> None:
    """Containers of another architecture run under QEMU user emulation; install it only where
    allowed (as for the engine). Raises, never skips."""
    problem = emulation_problem(machine)
    if not problem:
        return
    if not may_install(env):
        raise EngineMissing(
            f"{problem}: `docker run --privileged --rm tonistiigi/binfmt --install all` registers "
            f"one; {INSTALL_ENGINE}=1 lets the tests install Debian's qemu-user-static (as root)"
        )
    print(f"template_testing: {problem}; installing QEMU user emulation")
    sh("bash", str(SCRIPTS / "ensure-emulation.sh"), machine, timeout=900)


def stand_in_repository(arch: str | None = None) -> str:
    """The offline stand-ins' python repository: python for the host's architecture, tdt-ARCH/python
    for another (the engine's image store keeps one platform per tag; see seed-base-images.sh)."""
    return "python" if arch in (None, dpkg_arch(HOST_MACHINE)) else f"tdt-{arch}/python"


DPKG_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}  # `uname -m` -> Debian's and Docker's name


def dpkg_arch(machine: str) -> str:
    return DPKG_ARCH[machine]


def base_image(python: str, debian_release: str, arch: str | None = None) -> str:
    return f"{stand_in_repository(arch)}:{python}-slim-{debian_release}"


def missing_base_image(
    network: Network, python: str, debian_release: str, arch: str | None = None
) -> str | None:
    """Why the base image cannot be had on this host, or None: online it is pulled by the build;
    offline only the Debian stand-ins exist."""
    if not network.offline or DEBIAN_PYTHON.get(python) == debian_release:
        return None
    if image_present(base_image(python, debian_release, arch)):
        return None
    stand_ins = ", ".join(base_image(p, r) for p, r in DEBIAN_PYTHON.items())
    return (
        f"base image {base_image(python, debian_release)}: the registry cannot be reached and "
        f"no Debian release's python3 is Python {python} (stand-ins exist for {stand_ins})"
    )


def image_present(image: str) -> bool:
    done = subprocess.run([docker(), "image", "inspect", image], capture_output=True)
    return done.returncode == 0


def ensure_base_image(
    network: Network, python: str, debian_release: str, arch: str | None = None
) -> None:
    """Offline: build the stand-in from Debian packages unless it is there (a no-op online)."""
    if network.offline:
        sh(
            "bash",
            str(SCRIPTS / "seed-base-images.sh"),
            f"{python}:{debian_release}:{arch or dpkg_arch(HOST_MACHINE)}",
            env={"DOCKER": docker()},
            timeout=900,
        )


def ensure_space() -> None:
    """Cap Docker's build cache and check the builds have room (scripts/ensure-docker-space.sh)."""
    sh("bash", str(SCRIPTS / "ensure-docker-space.sh"), env={"DOCKER": docker()})


def remove_images(*tags: str) -> None:
    """Remove these tags and the dangling layers left behind; base images stay."""
    subprocess.run([docker(), "rmi", "-f", *tags], capture_output=True)
    subprocess.run([docker(), "image", "prune", "-f"], capture_output=True)
