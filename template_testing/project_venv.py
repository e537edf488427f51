"""One venv with a generated project's runtime and dev requirements and CPU torch 2.13.0, shared by
every baked project's own tests and the torchrun stress script (.cache/project-venv). The
project's code is the same for every torch release, and CUDA torch runs the same code on a CPU.

Torch comes from the PyTorch CPU index online, from TDT_OFFLINE_WHEELS through the offline
fallback; the rest from PyPI.
"""

from __future__ import annotations

import fcntl
import re
import subprocess
import sys
from pathlib import Path

from .commands import TEMPLATE
from .network import this_host, torch_index_default

VENV = TEMPLATE / ".cache" / "project-venv"
TORCH = "torch==2.13.0+cpu"


def project_requirements() -> list[str]:
    """The generated pyproject.toml's runtime and dev requirements, but torch (its lock pins them
    in images); read from the template file, whose requirement lines hold no Jinja."""
    text = (TEMPLATE / "{{cookiecutter.project_slug}}" / "pyproject.toml").read_text()
    # [project]'s dependencies and [dependency-groups]' dev: one quoted requirement per line.
    found = re.findall(r'^    "([A-Za-z][\w.-]*(?:\[[\w,-]+\])?[<>=!~][^"]*)",', text, re.M)
    runtime, dev = found[: found.index("pytest>=8")], found[found.index("pytest>=8") :]
    assert "fastapi" in str(runtime) and "pytest" in str(dev), "pyproject.toml's layout changed"
    return runtime + dev


def torch_source() -> list[str]:
    network = this_host()
    if not network.offline:
        return ["--extra-index-url", f"{torch_index_default()}/cpu/"]
    if network.torch_index:
        return ["--extra-index-url", f"{network.torch_index}/cpu/"]
    return [arg for folder in network.wheel_folders for arg in ("--find-links", str(folder))]


def project_python() -> Path:
    """The venv's Python, made under a file lock (pytest-xdist workers may ask together), again
    whenever the project's requirements change."""
    python, ready = VENV / "bin" / "python", VENV / ".ready"
    wanted = [TORCH, *project_requirements()]
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with (VENV.parent / "project-venv.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ready.exists() or ready.read_text() != "\n".join(wanted):
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                 *torch_source(), *wanted],
                check=True,
            )  # fmt: skip
            ready.write_text("\n".join(wanted))
    return python
