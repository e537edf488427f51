"""A baked project's own test suite passes, for a representative subset of bakes, in the shared
project venv (template_testing/project_venv.py)."""

import pytest

from template_testing.commands import sh
from template_testing.project_venv import project_python as make_project_python

SUBSET = [
    {"torch_version": "2.13.0", "python_version": "3.11", "accelerator": "cpu"},
    {"torch_version": "2.14.1", "python_version": "3.11", "accelerator": "cuda"},
    {"torch_version": "2.15.0", "python_version": "3.13", "accelerator": "cuda",
     "project_name": "Digit Classifier", "package_name": "digits"},
]  # fmt: skip


@pytest.fixture(scope="session")
def project_python():
    return make_project_python()


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
