"""The linters every bake and the template's own workflows must pass."""

from __future__ import annotations

import shutil
from pathlib import Path

from .commands import sh, tool

ACTIONLINT_MISSING = (
    "actionlint is not installed: `pip install --group actionlint` (the template's GitHub "
    "workflow does); its sdist downloads actionlint from GitHub's releases, which this host "
    "cannot reach"
)


def actionlint() -> str | None:
    found = tool("actionlint")
    return found if Path(found).is_file() or shutil.which(found) else None


def workflows_clean(root: Path) -> None:
    """zizmor (offline, nothing of medium severity or worse) and, where installed, actionlint
    (no error) on the workflows under root/.github/workflows."""
    sh(tool("zizmor"), "--offline", "--min-severity", "medium", "--no-progress", ".", cwd=root)
    if linter := actionlint():
        sh(linter, "-no-color", cwd=root)
