"""What the template must bake and what it must refuse, written out by hand from the sources
named in torch_compat/releases.json, so the tests check the data rather than restate it."""

import json

from template_testing.commands import TEMPLATE
from torch_compat import load

PY_310_314 = ("3.10", "3.11", "3.12", "3.13", "3.14")
PY_311_315 = ("3.11", "3.12", "3.13", "3.14", "3.15")

# torch release: Python versions with wheels, CUDA builds ('auto' first, resolved), companions,
# and what has linux/arm64 wheels (every build has linux/amd64 ones): torch's builds, and the
# builds of a companion ("cpu" for torchvision; torchaudio none).
EXPECTED = {
    "2.15.0": {"python": PY_311_315, "cuda": {"auto": "13.2", "13.2": "13.2"},
               "torchvision": None, "torchaudio": None,
               "arm64": {"torch": {"cpu", "13.2"}}},
    "2.14.1": {"python": PY_310_314, "cuda": {"auto": "13.0", "13.2": "13.2", "13.0": "13.0", "12.6": "12.6"},
               "torchvision": "0.29.1", "torchaudio": None,
               "arm64": {"torch": {"cpu", "13.0", "12.6"}, "torchvision": {"cpu"}}},
    "2.13.0": {"python": PY_310_314, "cuda": {"auto": "13.0", "13.2": "13.2", "13.0": "13.0", "12.6": "12.6"},
               "torchvision": "0.28.0", "torchaudio": None,
               "arm64": {"torch": {"cpu", "13.0", "12.6"}, "torchvision": {"cpu"}}},
    "2.12.1": {"python": PY_310_314, "cuda": {"auto": "13.0", "13.2": "13.2", "13.0": "13.0", "12.6": "12.6"},
               "torchvision": "0.27.1", "torchaudio": None,
               "arm64": {"torch": {"cpu", "13.0", "12.6"}, "torchvision": {"cpu"}}},
    "2.11.0": {"python": PY_310_314, "cuda": {"auto": "13.0", "13.0": "13.0", "12.8": "12.8", "12.6": "12.6"},
               "torchvision": "0.26.0", "torchaudio": "2.11.0",
               "arm64": {"torch": {"cpu", "13.0", "12.8", "12.6"}, "torchvision": {"cpu"}, "torchaudio": set()}},
    "2.10.0": {"python": PY_310_314, "cuda": {"auto": "12.8", "13.0": "13.0", "12.8": "12.8", "12.6": "12.6"},
               "torchvision": "0.25.0", "torchaudio": "2.10.0",
               "arm64": {"torch": {"cpu", "13.0", "12.8", "12.6"}, "torchvision": {"cpu"}, "torchaudio": set()}},
}  # fmt: skip
ARM64 = "linux/arm64"


def supported() -> list[dict[str, str]]:
    """Every torch x Python x accelerator x CUDA answer the template offers."""
    combos = []
    for torch, facts in EXPECTED.items():
        for python in facts["python"]:
            base = {"torch_version": torch, "python_version": python}
            combos.append({**base, "accelerator": "cpu", "cuda_version": "auto"})
            combos += [
                {**base, "accelerator": "cuda", "cuda_version": cuda} for cuda in facts["cuda"]
            ]
        # linux/arm64 alone, for each build with arm64 wheels (the newest Python of the release).
        newest = {"torch_version": torch, "python_version": facts["python"][-1], "platforms": ARM64}
        combos += [
            {**newest, "accelerator": "cpu", "cuda_version": "auto"}
            if build == "cpu"
            else {**newest, "accelerator": "cuda", "cuda_version": build}
            for build in sorted(facts["arm64"]["torch"])
        ]
        # uv (the newest Python): each build alone, and the CPU build with each CUDA build in
        # one lock, for every platform and for linux/arm64 alone where both have its wheels.
        uv = {"torch_version": torch, "python_version": facts["python"][-1],
              "package_manager": "uv"}  # fmt: skip
        combos += [{**uv, "accelerator": "cpu", "cuda_version": "auto"},
                   {**uv, "accelerator": "cuda", "cuda_version": "auto"}]  # fmt: skip
        combos += [{**uv, "accelerator": "cpu+cuda", "cuda_version": c} for c in facts["cuda"]]
        combos += [
            {**uv, "accelerator": "cpu+cuda", "cuda_version": c, "platforms": ARM64}
            for c in sorted(facts["arm64"]["torch"] - {"cpu"})
        ]
    return combos


def combo_id(combo: dict[str, str]) -> str:
    build = "cpu" if combo["accelerator"] == "cpu" else f"cuda-{combo['cuda_version']}"
    if combo["accelerator"] == "cpu+cuda":
        build = f"cpu+{build}"
    extras = "".join(f"+{k.removeprefix('include_')}" for k, v in combo.items() if v == "yes")
    platforms = combo.get("platforms", "auto")
    arch = (
        "" if platforms == "auto" else "-" + "+".join(p.split("/")[1] for p in platforms.split(","))
    )
    manager = "-uv" if combo.get("package_manager") == "uv" else ""
    return (
        f"torch{combo['torch_version']}-py{combo['python_version']}-{build}{extras}{arch}{manager}"
    )


# Answers that must be refused, each with a fragment the one error message must contain.
UNSUPPORTED = [
    ({"torch_version": "2.15.0", "python_version": "3.10"}, "no wheels for Python 3.10"),
    ({"torch_version": "2.14.1", "python_version": "3.15"}, "no wheels for Python 3.15"),
    (
        {"torch_version": "2.10.0", "accelerator": "cuda", "cuda_version": "13.2"},
        "no CUDA 13.2 build",
    ),
    (
        {"torch_version": "2.15.0", "accelerator": "cuda", "cuda_version": "12.6"},
        "no CUDA 12.6 build",
    ),
    (
        {"torch_version": "2.12.1", "accelerator": "cuda", "cuda_version": "12.8"},
        "no CUDA 12.8 build",
    ),
    ({"accelerator": "cpu", "cuda_version": "13.0"}, "needs accelerator 'cuda'"),
    ({"torch_version": "2.13.0", "include_torchaudio": "yes"}, "torchaudio has no release"),
    ({"torch_version": "2.15.0", "include_torchvision": "yes"}, "torchvision has no release"),
    (
        {
            "torch_version": "2.14.1",
            "accelerator": "cuda",
            "cuda_version": "13.2",
            "platforms": ARM64,
        },
        "CUDA 13.2 build has no linux/arm64 wheels of torch; choose platforms from: linux/amd64; "
        "or cuda_version from: 13.0, 12.6",
    ),
    (
        {
            "torch_version": "2.11.0",
            "include_torchaudio": "yes",
            "platforms": "linux/amd64,linux/arm64",
        },
        "no linux/arm64 wheels of torchaudio",
    ),
    (
        {
            "torch_version": "2.13.0",
            "accelerator": "cuda",
            "include_torchvision": "yes",
            "platforms": ARM64,
        },
        "CUDA 13.0 build has no linux/arm64 wheels of torchvision",
    ),
    (
        {"accelerator": "cpu+cuda"},
        "accelerator 'cpu+cuda' needs package_manager 'uv': Poetry cannot hold two torch builds "
        "in one lock",
    ),
    (
        {
            "package_manager": "uv",
            "accelerator": "cpu+cuda",
            "torch_version": "2.14.1",
            "cuda_version": "13.2",
            "platforms": ARM64,
        },
        "CUDA 13.2 build has no linux/arm64 wheels of torch",
    ),
    (
        {"package_manager": "uv", "accelerator": "cpu+cuda", "cuda_version": "12.6"},
        "no CUDA 12.6 build",
    ),
    ({"package_manager": "pip"}, "pip"),
    ({"platforms": "linux/s390x"}, "platforms 'linux/s390x' is not valid"),
    ({"platforms": "arm64"}, "a comma list of: linux/amd64, linux/arm64"),
    ({"torch_version": "2.9.1"}, "2.9.1"),
    ({"python_version": "3.9"}, "3.9"),
    ({"accelerator": "rocm"}, "rocm"),
    ({"project_slug": "My Project"}, "project_slug 'My Project' is not valid"),
    ({"project_slug": "-x"}, "project_slug '-x' is not valid"),
    ({"package_name": "class"}, "package_name 'class' is not valid"),
    ({"package_name": "1abc"}, "package_name '1abc' is not valid"),
    ({"package_name": "json"}, "would shadow"),
    ({"author_email": "nobody"}, "author_email 'nobody'"),
    ({"description": 'A "quoted" model'}, "may not hold double quotes"),
    ({"version": "one"}, "version 'one'"),
    ({"include_torchvision": "maybe"}, "maybe"),
    ({"torch_index_url": "ftp://example.com/whl"}, "torch_index_url"),
    ({"package_index_url": "mirror.local/simple"}, "package_index_url"),
]


# Image builds: each option the template offers appears in at least one (one option at a time,
# as cookiecutter-django does), so every Python, torch release, CUDA build, accelerator,
# companion and platform is built and run. Missing answers take cookiecutter.json's defaults: {}
# is what a user who presses enter gets. A build answered for every platform is built for the
# host's; one answered linux/arm64 alone is built for arm64 (natively on GitHub's arm runners,
# under QEMU emulation elsewhere). The first four and the first two arm64 ones build through the
# offline fallback too (arm64 there: PyPI's aarch64 wheels, the CPU build only up to 2.10.0, so
# no arm64 cpu+cuda). uv builds: CUDA, cpu+cuda (both builds), CPU on amd64 and arm64.
BUILDS = [
    # compiled: also build the runtime-compile target and serve through torch.compile;
    # text_model: then swap in tests/seams/text_model.py, train, serve and test it in the image.
    {
        "torch_version": "2.13.0",
        "python_version": "3.11",
        "accelerator": "cpu",
        "compiled": "yes",
        "text_model": "yes",
    },
    {
        "torch_version": "2.14.1",
        "python_version": "3.11",
        "accelerator": "cuda",
        "cuda_version": "13.0",
        "include_torchvision": "yes",
    },
    {
        "torch_version": "2.14.1",
        "python_version": "3.13",
        "accelerator": "cuda",
        "package_manager": "uv",
    },
    # One uv.lock, both builds: the image test builds and checks each (TORCH_BUILD=cpu, cu130).
    {
        "torch_version": "2.13.0",
        "python_version": "3.11",
        "accelerator": "cpu+cuda",
        "package_manager": "uv",
    },
    {},
    {
        "torch_version": "2.15.0",
        "python_version": "3.15",
        "accelerator": "cpu",
        "package_manager": "uv",
    },
    {
        "torch_version": "2.13.0",
        "python_version": "3.14",
        "accelerator": "cpu",
        "include_torchvision": "yes",
    },
    {
        "torch_version": "2.12.1",
        "python_version": "3.14",
        "accelerator": "cuda",
        "cuda_version": "13.2",
    },
    {
        "torch_version": "2.11.0",
        "python_version": "3.12",
        "accelerator": "cuda",
        "cuda_version": "12.8",
        "include_torchvision": "yes",
        "include_torchaudio": "yes",
    },
    {
        "torch_version": "2.10.0",
        "python_version": "3.10",
        "accelerator": "cuda",
        "cuda_version": "12.6",
        "include_torchaudio": "yes",
    },
    {
        "torch_version": "2.10.0",
        "python_version": "3.11",
        "accelerator": "cpu",
        "platforms": ARM64,
        "package_manager": "uv",
    },
    {
        "torch_version": "2.14.1",
        "python_version": "3.11",
        "accelerator": "cuda",
        "platforms": ARM64,
    },
    {
        "torch_version": "2.14.1",
        "python_version": "3.11",
        "accelerator": "cpu+cuda",
        "package_manager": "uv",
        "platforms": ARM64,
    },
]


def with_defaults(answers: dict[str, str]) -> dict[str, str]:
    """The answers a bake with these --no-input values ends up with, for the build options."""
    defaults = json.loads((TEMPLATE / "cookiecutter.json").read_text())
    keys = ("torch_version", "python_version", "accelerator", "cuda_version",
            "include_torchvision", "include_torchaudio", "platforms", "package_manager")  # fmt: skip
    # A choice's default is its first item; python_version is text (see cookiecutter.json).
    first = {key: d if isinstance(d, str) else d[0] for key, d in defaults.items() if key in keys}
    return {key: answers.get(key, first[key]) for key in keys}


def build_id(answers: dict[str, str]) -> str:
    return combo_id(with_defaults(answers))


def runner(answers: dict[str, str]) -> str:
    """The GitHub runner that builds it natively: arm64 builds on GitHub's arm runners."""
    return load().github_runner(ARM64 if answers.get("platforms") == ARM64 else "linux/amd64")


if __name__ == "__main__":
    # The template's workflow builds its image matrix from this: one job per build.
    print(json.dumps([{"build": build_id(b), "runner": runner(b)} for b in BUILDS]))
