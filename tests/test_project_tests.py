"""A baked project's own fast test layer (its default `pytest`: in-process, no servers) passes,
for a representative subset of bakes, in the shared project venv
(template_testing/project_venv.py), within its 60-second budget on 2 cores (the timing summary
shows each). The slow layer (real servers and processes, `pytest -m slow`) runs in the image
tests, once per package manager and accelerator, and in tests/test_seam.py."""

import re
import time

import pytest

from template_testing import timing
from template_testing.commands import sh
from template_testing.project_venv import project_python as make_project_python

FAST_LAYER_BUDGET_S = 60
SUBSET = [
    pytest.param({"torch_version": "2.13.0", "python_version": "3.11", "accelerator": "cpu"},
                 marks=pytest.mark.quick),
    {"torch_version": "2.14.1", "python_version": "3.11", "accelerator": "cuda"},
    {"torch_version": "2.15.0", "python_version": "3.13", "accelerator": "cuda",
     "project_name": "Digit Classifier", "package_name": "digits"},
]  # fmt: skip


@pytest.fixture(scope="session")
def project_python():
    return make_project_python()


@pytest.mark.parametrize("answers", SUBSET, ids=lambda a: "-".join(a.values()))
def test_baked_project_fast_layer_passes(bake, project_python, answers):
    project = bake(**answers)
    started = time.monotonic()
    out = sh(
        str(project_python), "-m", "pytest", "-q", "-p", "no:cacheprovider",
        cwd=project, env={"PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    name = "-".join(answers.values())
    timing.record(f"generated fast layer: {name}", time.monotonic() - started,
                  FAST_LAYER_BUDGET_S)  # fmt: skip
    passed = int(re.search(r"(\d+) passed", out).group(1))
    deselected = int(re.search(r"(\d+) deselected", out).group(1))
    assert passed >= 80 and deselected >= 20, out[-2000:]  # the fast layer; the slow one apart
