"""A baked project's own test suite passes, for a representative subset of bakes.

The project's runtime and dev dependencies go into one shared venv (.cache/project-venv) with
CPU torch 2.13.0: from the PyTorch CPU index online, from TDT_OFFLINE_WHEELS' folders through
the offline fallback. The project's code is the same for every torch release, and CUDA torch
runs the same code on a CPU.
"""

import fcntl
import re
import subprocess
import sys
from pathlib import Path

import pytest

from template_testing.commands import TEMPLATE, sh
from template_testing.network import this_host

VENV = TEMPLATE / ".cache" / "project-venv"
TORCH = "torch==2.13.0+cpu"


def project_requirements() -> list[str]:
    """The generated pyproject.toml's runtime and dev requirements, but torch (its lock pins them
    in images); read from the template file, whose requirement lines hold no Jinja."""
    text = (TEMPLATE / "{{cookiecutter.project_slug}}" / "pyproject.toml").read_text()
    runtime = re.findall(r'^    "([A-Za-z][\w.-]*[<>=!~][^"]*)",', text, re.MULTILINE)
    dev_table = text.split("[tool.poetry.group.dev.dependencies]\n")[1].split("\n\n")[0]
    dev = [f"{name}{spec}" for name, spec in re.findall(r'^([\w-]+) = "([^"]+)"', dev_table, re.M)]
    assert "fastapi" in str(runtime) and "pytest" in str(dev), "pyproject.toml's layout changed"
    return runtime + dev


def torch_source() -> list[str]:
    network = this_host()
    if not network.offline:
        return ["--extra-index-url", "https://download.pytorch.org/whl/cpu/"]
    if network.torch_index:
        return ["--extra-index-url", f"{network.torch_index}/cpu/"]
    return [arg for folder in network.wheel_folders for arg in ("--find-links", str(folder))]


SUBSET = [
    {"torch_version": "2.13.0", "python_version": "3.11", "accelerator": "cpu"},
    {"torch_version": "2.14.1", "python_version": "3.11", "accelerator": "cuda"},
    {"torch_version": "2.15.0", "python_version": "3.13", "accelerator": "cuda",
     "project_name": "Digit Classifier", "package_name": "digits"},
]  # fmt: skip


@pytest.fixture(scope="session")
def project_python() -> Path:
    """Made once, under a lock: xdist workers may ask for it at the same time."""
    python, ready = VENV / "bin" / "python", VENV / ".ready"
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with (VENV.parent / "project-venv.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ready.exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                 *torch_source(), TORCH, *project_requirements()],
                check=True,
            )  # fmt: skip
            ready.touch()
    return python


@pytest.mark.parametrize("answers", SUBSET, ids=lambda a: "-".join(a.values()))
def test_baked_project_tests_pass(bake, project_python, answers):
    project = bake(**answers)
    out = sh(
        str(project_python),
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        cwd=project,
        env={"PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert " passed" in out
