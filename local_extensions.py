"""Jinja helpers for the template files: derived values come from torch_compat, not Jinja."""

import logging
from pathlib import Path

from jinja2.ext import Extension

from torch_compat import load, tools


def torch_plan(cookiecutter):
    """The resolved torch build for these answers (pre_gen_project has already validated them)."""
    return load().plan(cookiecutter)


class NoHookTraceback(logging.Filter):
    """cookiecutter logs a refused answer (a pre_gen hook that exits 1 after printing its one-line
    reason) with logger.exception, so a traceback of its own internals followed the reason
    (cookiecutter/hooks.py, run_hook_from_repo_dir). Keep the line, drop the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "hook script didn't exit successfully" in record.getMessage():
            record.exc_info, record.exc_text = None, None
        return True


class TorchPlanExtension(Extension):
    def __init__(self, environment):
        super().__init__(environment)
        environment.filters["torch_plan"] = torch_plan
        # Absolute, unlike cookiecutter._repo_dir: the hooks run from the project folder.
        environment.globals["template_root"] = str(Path(__file__).resolve().parent)
        environment.globals["tools"] = tools.pins()  # {{ tools.poetry }}, {{ tools.uv }}, ...
        compat = load()
        # {{ github_runners["linux/arm64"] }}: the runner that builds a platform natively.
        environment.globals["github_runners"] = {
            p: compat.github_runner(p) for p in compat.platforms
        }
        # {{ machines["linux/arm64"] }}: a platform's `uname -m` (uv's platform_machine).
        environment.globals["machines"] = {p: compat.machine(p) for p in compat.platforms}
        hooks_log = logging.getLogger("cookiecutter.hooks")
        if not any(isinstance(f, NoHookTraceback) for f in hooks_log.filters):
            hooks_log.addFilter(NoHookTraceback())
