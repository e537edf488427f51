"""Shape the baked project to its one torch build.

Keeps the files of the chosen accelerator and license, writes the exact torch pins and the one
explicit torch source into pyproject.toml, and prints the next steps. Works offline.
"""

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, {{ template_root | tojson }})  # for torch_compat

from torch_compat import TorchPlan, load  # noqa: E402

PROJECT = Path.cwd()
ANSWERS = json.loads({{ cookiecutter | tojson | tojson }})
ACCELERATOR = ANSWERS["accelerator"]
PACKAGE_INDEX_URL = ANSWERS["package_index_url"]
PLAN = load().plan_for(ANSWERS)

# Whole-file variants: the chosen file takes the target name, the others go.
VARIANTS = {
    "Dockerfile": {"cpu": "docker/Dockerfile.cpu", "cuda": "docker/Dockerfile.cuda"}[ACCELERATOR],
    "LICENSE": f"licenses/{ANSWERS['license']}.txt",
}
VARIANT_DIRS = ["licenses"]
VARIANT_GLOBS = ["docker/Dockerfile.*"]
# Files only one accelerator needs.
ONLY_FOR = {"compose.gpu.yaml": "cuda"}

DEPENDENCIES_MARKER = "    # @torch-dependencies\n"
SOURCES_MARKER = "# @torch-sources\n"


def keep_variant_files() -> None:
    for target, chosen in VARIANTS.items():
        (PROJECT / chosen).replace(PROJECT / target)
    for pattern in VARIANT_GLOBS:
        for leftover in PROJECT.glob(pattern):
            leftover.unlink()
    for folder in VARIANT_DIRS:
        shutil.rmtree(PROJECT / folder)
    for name, accelerator in ONLY_FOR.items():
        if accelerator != ACCELERATOR:
            (PROJECT / name).unlink()


def toml_str(value: str) -> str:
    # A JSON string of printable text is a valid TOML basic string.
    return json.dumps(value)


def torch_dependencies(plan: TorchPlan) -> str:
    return "".join(f"    {toml_str(f'{name}=={version}')},\n" for name, version in plan.packages.items())


def torch_sources(plan: TorchPlan) -> str:
    lines = []
    if PACKAGE_INDEX_URL:
        lines += [
            "# Everything but the torch packages comes from this package index (a PyPI mirror).",
            "[[tool.poetry.source]]",
            'name = "package-index"',
            f"url = {toml_str(PACKAGE_INDEX_URL)}",
            'priority = "primary"',
            "",
        ]
    build = f"CUDA {plan.cuda}" if plan.cuda else "CPU"
    lines += [
        f"# The one torch build of this project ({build}). Explicit priority: only the",
        "# packages that name this source below come from it.",
        "[[tool.poetry.source]]",
        f"name = {toml_str(plan.source_name)}",
        f"url = {toml_str(plan.index_url)}",
        'priority = "explicit"',
        "",
        "[tool.poetry.dependencies]",
    ]
    source = toml_str(plan.source_name)
    lines += ["%s = { source = %s }" % (name, source) for name in plan.packages]  # noqa: UP031
    return "\n".join(lines) + "\n"


def write_torch_pins(plan: TorchPlan) -> None:
    pyproject = PROJECT / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    for marker in (DEPENDENCIES_MARKER, SOURCES_MARKER):
        if text.count(marker) != 1:
            sys.exit(f"template error: pyproject.toml must hold {marker.strip()!r} exactly once")
    text = text.replace(DEPENDENCIES_MARKER, torch_dependencies(plan))
    text = text.replace(SOURCES_MARKER, torch_sources(plan))
    pyproject.write_text(text, encoding="utf-8")


def print_next_steps(plan: TorchPlan) -> None:
    build = f"CUDA {plan.cuda} (NVIDIA driver >= {plan.min_linux_driver})" if plan.cuda else "CPU"
    compose = "docker compose -f compose.yaml -f compose.gpu.yaml" if plan.cuda else "docker compose"
    print(
        f"\nCreated {PROJECT.name}: torch {plan.torch}, {build}, Python {plan.python}.\n"
        "Next steps:\n"
        f"  cd {PROJECT.name}\n"
        "  poetry lock          # resolves and pins every package; commit poetry.lock\n"
        "  poetry install\n"
        "  poetry run pytest\n"
        f"  {compose} up --build\n"
    )


def main() -> None:
    keep_variant_files()
    write_torch_pins(PLAN)
    print_next_steps(PLAN)


if __name__ == "__main__":
    main()
