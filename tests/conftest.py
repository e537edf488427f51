import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TEMPLATE))  # torch_compat

BIN = Path(sys.executable).parent  # the dev tools installed beside pytest: ruff, hadolint, ...
UNRENDERED = re.compile(r"(?<!\$){{|{%|%}|cookiecutter\.")  # ${{ }} is GitHub Actions


def tool(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else name


def sh(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 1800) -> str:
    """Run a command and return its stdout; fail the test with the end of its output otherwise."""
    done = subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {done.returncode}:\n"
            f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
    return done.stdout


@pytest.fixture
def bake(cookies):
    """Bake with the given answers; fail with cookiecutter's own error if baking fails."""

    def _bake(**answers: str) -> Path:
        result = cookies.bake(extra_context=answers, template=str(TEMPLATE))
        assert result.exception is None, f"{answers} failed to bake: {result.exception!r}"
        return Path(result.project_path)

    return _bake
