{%- set plan = cookiecutter | torch_plan -%}
"""Is the GPU this image was built for usable? Checked at start-up, so that a CUDA image on a host
without a GPU, or with a driver older than its CUDA build needs, says so instead of quietly
serving on the CPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import re
from dataclasses import dataclass
from pathlib import Path

import torch

# The NVIDIA Linux driver this project's torch build needs (from the template's torch_compat).
MIN_DRIVER: str | None = {% if plan.min_linux_driver %}"{{ plan.min_linux_driver }}"{% else %}None{% endif %}
DRIVER_FILE = Path("/proc/driver/nvidia/version")


def nvidia_driver() -> str | None:
    """The NVIDIA kernel driver's version, e.g. '580.65.06', or None where there is none: from
    NVML (which the NVIDIA Container Toolkit mounts), else from /proc."""
    with contextlib.suppress(OSError, AttributeError):  # no library, or not NVML's
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
        if nvml.nvmlInit_v2() == 0:
            buffer = ctypes.create_string_buffer(96)
            found = nvml.nvmlSystemGetDriverVersion(buffer, len(buffer)) == 0
            nvml.nvmlShutdown()
            if found:
                return buffer.value.decode()
    try:
        found = re.search(r"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)", DRIVER_FILE.read_text())
    except OSError:
        return None
    return found.group(1) if found else None


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def cuda_problem(cuda_build: str | None, driver: str | None, available: bool) -> str | None:
    """Why CUDA cannot be used, in one line, or None when it can."""
    if cuda_build is None:
        return "this torch is a CPU-only build"
    if driver is None:
        return (
            f"no NVIDIA driver is visible (torch's CUDA {cuda_build} build needs one >= "
            f"{MIN_DRIVER}): run with the NVIDIA Container Toolkit and a GPU (--gpus all)"
        )
    if MIN_DRIVER and version_tuple(driver) < version_tuple(MIN_DRIVER):
        return (
            f"the NVIDIA driver {driver} is older than {MIN_DRIVER}, which torch's CUDA "
            f"{cuda_build} build needs: upgrade the host's driver"
        )
    if not available:
        return f"CUDA is not usable with NVIDIA driver {driver} (no device visible to torch)"
    return None


@dataclass(frozen=True)
class Accelerator:
    """What start-up found: the device to use, and why not CUDA where it is not."""

    device: torch.device
    cuda_build: str | None
    driver: str | None
    gpu: str | None
    problem: str | None

    @classmethod
    def detect(cls) -> Accelerator:
        driver = nvidia_driver() if torch.version.cuda else None
        problem = cuda_problem(torch.version.cuda, driver, torch.cuda.is_available())
        device = torch.device("cpu" if problem else "cuda")
        gpu = None if problem else torch.cuda.get_device_name(device)
        return cls(device, torch.version.cuda, driver, gpu, problem)
