"""Prune the baked project to its choices and print the next steps.

Everything else, torch's pins and sources included, is rendered by Jinja from the plan that
torch_compat resolves (local_extensions.py). Works offline.
"""

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, {{ template_root | tojson }})  # for torch_compat

from torch_compat import TorchPlan, load  # noqa: E402

PROJECT = Path.cwd()
ANSWERS = json.loads({{ cookiecutter | tojson | tojson }})
PLAN = load().plan(ANSWERS)

# Files only one accelerator needs.
ONLY_FOR = {"compose.gpu.yaml": "cuda"}


def prune() -> None:
    (PROJECT / "licenses" / f"{ANSWERS['license']}.txt").replace(PROJECT / "LICENSE")
    shutil.rmtree(PROJECT / "licenses")
    for name, accelerator in ONLY_FOR.items():
        if accelerator != PLAN.accelerator:
            (PROJECT / name).unlink()


def print_next_steps(plan: TorchPlan) -> None:
    build = f"CUDA {plan.cuda} (NVIDIA driver >= {plan.min_linux_driver})" if plan.cuda else "CPU"
    compose = "docker compose -f compose.yaml -f compose.gpu.yaml" if plan.cuda else "docker compose"
    print(
        f"\nCreated {PROJECT.name}: torch {plan.torch}, {build}, Python {plan.python}.\n"
        "Next steps:\n"
        f"  cd {PROJECT.name}\n"
        "  docker build --target lock --output type=local,dest=. .   # writes poetry.lock; commit it\n"
        "      (or, with Poetry installed: poetry lock)\n"
        f"  {compose} up --build\n"
        "  poetry install && poetry run pytest                         # to develop outside Docker\n"
    )


def main() -> None:
    prune()
    print_next_steps(PLAN)


if __name__ == "__main__":
    main()
