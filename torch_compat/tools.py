"""The tool versions a generated project uses (Poetry, its export plugin, uv, ruff, hadolint):
the template's own dev pins in its pyproject.toml, the one place they are written. The template
renders them into the Dockerfile, CI and README. Standard library only, no tomllib: the hooks'
Python may be 3.10."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


@cache
def pins() -> dict[str, str]:
    """{distribution: exact version} of every `name==version` in [dependency-groups]."""
    text = PYPROJECT.read_text(encoding="utf-8")
    groups = text.split("[dependency-groups]", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r'"([A-Za-z0-9][\w.-]*)==([^";\s]+)"', groups))
