"""Run the commands the tests need, and find the dev tools installed beside this Python."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1]  # the template repository's root
BIN = Path(sys.executable).parent  # the dev tools installed beside pytest: ruff, hadolint, ...


def tool(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else name


def sh(
    *args: str,
    cwd: Path | None = None,
    env: dict | None = None,
    timeout: int = 1800,
    with_stderr: bool = False,
) -> str:
    """Run a command and return its stdout (and stderr after it, `with_stderr`); fail with the end
    of its output otherwise."""
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
    return done.stdout + (done.stderr if with_stderr else "")
