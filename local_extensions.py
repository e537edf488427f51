"""Jinja helpers for the template files: derived values come from torch_compat, not Jinja."""

from pathlib import Path

from jinja2.ext import Extension

from torch_compat import load


def torch_plan(cookiecutter):
    """The resolved torch build for these answers (pre_gen_project has already validated them)."""
    return load().plan(cookiecutter)


class TorchPlanExtension(Extension):
    def __init__(self, environment):
        super().__init__(environment)
        environment.filters["torch_plan"] = torch_plan
        # Absolute, unlike cookiecutter._repo_dir: the hooks run from the project folder.
        environment.globals["template_root"] = str(Path(__file__).resolve().parent)
