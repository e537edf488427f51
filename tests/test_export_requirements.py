"""The generated project's docker/export_requirements.py (plain Python, no Jinja) resolves the
duplicate pins Poetry writes for torch 2.14's CUDA wheels, which pip would refuse."""

import importlib.util

import pytest

from template_testing.commands import TEMPLATE

SCRIPT = TEMPLATE / "{{cookiecutter.project_slug}}" / "docker" / "export_requirements.py"
spec = importlib.util.spec_from_file_location("export_requirements", SCRIPT)
export_requirements = importlib.util.module_from_spec(spec)
spec.loader.exec_module(export_requirements)

# The shape of Poetry's lock of torch 2.14.1 from PyPI: cuda-toolkit pins cuBLAS exactly,
# cuDNN asks for any cuBLAS, and the lock holds both 13.1.1.3 and 13.10.0.20.
LOCK = {
    "package": [
        {"name": "torch", "dependencies": {"cuda-toolkit": "==13.0.3", "nvidia-cudnn-cu13": "*"}},
        {"name": "cuda-toolkit", "dependencies": {
            "nvidia-cublas": {"version": "==13.1.1.3.*", "optional": True},
            "nvidia-cuda-nvrtc": {"version": "==13.0.88.*", "optional": True}}},
        {"name": "nvidia-cudnn-cu13", "dependencies": {"nvidia-cublas": "*"}},
        {"name": "nvidia-cublas", "dependencies": {"nvidia-cuda-nvrtc": "*"}},
        {"name": "nvidia-cuda-nvrtc"},
        {"name": "fastapi", "dependencies": {"starlette": ">=0.40"}},
        {"name": "starlette"},
    ]
}  # fmt: skip
EXPORT = [
    'nvidia-cublas==13.1.1.3 ; sys_platform == "linux" and platform_system == "Linux" \\\n'
    "    --hash=sha256:aaa",
    'nvidia-cublas==13.10.0.20 ; platform_system == "Linux" \\\n    --hash=sha256:bbb',
    'nvidia-cuda-nvrtc==13.0.88 ; platform_system == "Linux" \\\n    --hash=sha256:ccc',
    'nvidia-cuda-nvrtc==13.5.37 ; platform_system == "Linux" \\\n    --hash=sha256:ddd',
    "fastapi==0.120.0 \\\n    --hash=sha256:eee",
]


def test_keeps_the_exactly_pinned_version_of_a_split_package():
    kept = export_requirements.dedupe(EXPORT, export_requirements.exact_pins(LOCK))
    assert [line.split(" ")[0] for line in kept] == [
        "nvidia-cublas==13.1.1.3",
        "nvidia-cuda-nvrtc==13.0.88",
        "fastapi==0.120.0",
    ]


def test_refuses_to_guess_when_no_pin_decides():
    with pytest.raises(SystemExit, match=r"nvidia-cublas is locked as 13\.1\.1\.3, 13\.10\.0\.20"):
        export_requirements.dedupe(EXPORT[:2], set())


def test_torch_layer_holds_torch_and_everything_it_pulls_in():
    closure = export_requirements.closure(LOCK, export_requirements.TORCH_PACKAGES)
    assert closure == {"torch", "cuda-toolkit", "nvidia-cudnn-cu13", "nvidia-cublas",
                       "nvidia-cuda-nvrtc"}  # fmt: skip
