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

# Files only some answers need: {file: {answer: values that keep it}}.
ONLY_FOR = {
    "compose.gpu.yaml": {"accelerator": ("cuda", "cpu+cuda")},
    "poetry.toml": {"package_manager": ("poetry",)},
    "docker/export_requirements.py": {"package_manager": ("poetry",)},
    "docker/install_locked.sh": {"package_manager": ("poetry",)},
}


def prune() -> None:
    (PROJECT / "licenses" / f"{ANSWERS['license']}.txt").replace(PROJECT / "LICENSE")
    shutil.rmtree(PROJECT / "licenses")
    for name, keep in ONLY_FOR.items():
        if any(ANSWERS[key] not in values for key, values in keep.items()):
            (PROJECT / name).unlink()


def print_next_steps(plan: TorchPlan) -> None:
    build = f"CUDA {plan.cuda} (NVIDIA driver >= {plan.min_linux_driver})" if plan.cuda else "CPU"
    if plan.accelerator == "cpu+cuda":
        build = f"CPU and {build}"
    gpu = "docker compose -f compose.yaml -f compose.gpu.yaml up --build"
    compose = gpu if plan.cuda else "docker compose up --build"
    if plan.accelerator == "cpu+cuda":  # the CPU build by default, the CUDA one with the override
        compose = f"docker compose up --build    (the CUDA build: {gpu})"
    if plan.package_manager == "uv":
        extra = " --extra cpu" if plan.accelerator == "cpu+cuda" else ""
        lock, develop = "uv.lock", f"uv sync{extra} && uv run pytest"
    else:
        lock, develop = "poetry.lock", "poetry install && poetry run pytest"
    print(
        f"\nCreated {PROJECT.name}: torch {plan.torch}, {build}, Python {plan.python}.\n"
        "Next steps:\n"
        f"  cd {PROJECT.name}\n"
        f"  docker build --target lock --output type=local,dest=. .   # writes {lock}; commit it\n"
        f"      (or, with {plan.package_manager} installed: {plan.package_manager} lock)\n"
        f"  {compose}\n"
        f"  {develop:<59} # to develop outside Docker\n"
    )


def main() -> None:
    prune()
    print_next_steps(PLAN)


if __name__ == "__main__":
    main()
