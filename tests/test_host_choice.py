"""The image tests run online unless the real world cannot be reached or the fallback is forced;
a missing engine is installed only where that is allowed; the offline wheel index serves only
what it has. (No Docker needed: these run everywhere.)"""

from pathlib import Path

import pytest

from template_testing import engine
from template_testing.network import REGISTRY, choose, torch_index_default
from template_testing.wheel_index import WheelIndex, runs_on
from torch_compat import load

TORCH_INDEX = torch_index_default() + "/"


def always(answer: bool):
    return lambda url: answer


def test_online_when_index_and_registry_answer():
    network = choose({}, always(True))
    assert not network.offline
    assert "online" in network.describe()


@pytest.mark.parametrize("down", [TORCH_INDEX, REGISTRY])
def test_offline_fallback_when_either_cannot_be_reached(down):
    network = choose({"TDT_OFFLINE_WHEELS": "/a:/b"}, lambda url: url != down)
    assert network.offline
    assert down in network.reason
    assert network.wheel_folders == (Path("/a"), Path("/b"))
    assert "OFFLINE FALLBACK" in network.describe()


def test_forced_either_way_without_probing():
    def probe(url):
        raise AssertionError("a forced choice must not probe")

    assert choose({"TDT_OFFLINE": "1"}, probe).offline
    assert not choose({"TDT_OFFLINE": "0"}, probe).offline
    with pytest.raises(ValueError, match="TDT_OFFLINE"):
        choose({"TDT_OFFLINE": "maybe"}, probe)


def test_wheels_setting_may_name_an_index_instead_of_folders():
    network = choose({"TDT_OFFLINE": "1", "TDT_OFFLINE_WHEELS": "https://mirror.example/whl/"})
    assert network.torch_index == "https://mirror.example/whl"
    assert network.wheel_folders == ()


def test_nothing_reads_pip_configuration():
    network = choose({"TDT_OFFLINE": "1", "PIP_FIND_LINKS": "/opt/wheels"})
    assert network.wheel_folders == ()


def test_missing_engine_fails_with_how_to_get_one_unless_install_is_allowed(tmp_path):
    absent = str(tmp_path / "docker")
    with pytest.raises(engine.EngineMissing, match="Install Docker Desktop"):
        engine.ensure_engine({}, client=absent)
    assert engine.may_install({"CI": "true"})
    assert engine.may_install({"TDT_INSTALL_ENGINE": "1"})
    assert not engine.may_install({"CI": "false"})


def test_engine_problems_name_the_missing_plugin(tmp_path):
    fake = tmp_path / "docker"
    fake.write_text('#!/bin/sh\n[ "$1" = compose ] && exit 1\nexit 0\n')
    fake.chmod(0o755)
    assert engine.engine_problems(str(fake)) == ["the compose plugin (`docker compose`)"]


@pytest.fixture
def wheel_folder(tmp_path):
    for name in (
        "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",
        "six-1.0-py3-none-any.whl",
    ):
        (tmp_path / name).write_bytes(b"")
    return tmp_path


def plan(**answers):
    base = {"torch_version": "2.13.0", "python_version": "3.11", "accelerator": "cpu",
            "cuda_version": "auto", "torch_index_url": "http://127.0.0.1/whl",
            "include_torchvision": "no", "include_torchaudio": "no"}  # fmt: skip
    return load().plan(base | answers)


def test_offline_index_serves_local_wheels_by_build_and_python(wheel_folder, monkeypatch):
    monkeypatch.setattr("template_testing.wheel_index.pypi_links", lambda project: ())
    index = WheelIndex([wheel_folder])
    assert list(index.files) == ["torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"]
    assert index.missing(plan()) == []
    assert index.missing(plan(python_version="3.13")) == ["torch 2.13.0"]
    assert index.missing(plan(include_torchvision="yes")) == ["torchvision 0.28.0"]


def test_offline_index_takes_from_pypi_only_its_default_build(monkeypatch):
    files = {"torch": ["torch-2.14.1-cp313-cp313-manylinux_2_28_x86_64.whl",
                       "torch-2.15.0-cp313-cp313-manylinux_2_28_x86_64.whl"]}  # fmt: skip
    monkeypatch.setattr(
        "template_testing.wheel_index.pypi_links",
        lambda project: tuple((f, f"<a>{f}</a>") for f in files.get(project, [])),
    )
    index = WheelIndex([])
    pypi_cuda = {r.version: r.pypi_cuda for r in load().releases}
    assert pypi_cuda["2.14.1"] == "13.0" and pypi_cuda["2.15.0"] == "13.2"
    cuda = {"accelerator": "cuda", "python_version": "3.13"}
    assert index.missing(plan(torch_version="2.14.1", cuda_version="13.0", **cuda)) == []
    assert index.missing(plan(torch_version="2.14.1", cuda_version="12.6", **cuda)) == [
        "torch 2.14.1"
    ]
    assert index.missing(plan(torch_version="2.15.0", **cuda)) == []
    status, _, body = index.page("/whl/cu130/torch/")
    assert status == 200 and b"2.15.0" not in body and b"2.14.1" in body


def test_offline_index_serves_pypi_aarch64_files_as_the_build_they_are(monkeypatch):
    """PyPI's torch 2.10.0 is the CPU build on aarch64 and CUDA 12.8 on x86_64; from 2.11.0 both
    are the CUDA build (releases.json's pypi_arm64)."""
    files = {"torch": [f"torch-{v}-cp311-cp311-manylinux_2_28_{m}.whl"
                       for v in ("2.10.0", "2.14.1") for m in ("x86_64", "aarch64")]}  # fmt: skip
    monkeypatch.setattr(
        "template_testing.wheel_index.pypi_links",
        lambda project: tuple((f, f"<a>{f}</a>") for f in files.get(project, [])),
    )
    index = WheelIndex([])
    assert [name for name, _ in index.entries("cpu", "torch")] == [files["torch"][1]]
    assert [name for name, _ in index.entries("cu128", "torch")] == [files["torch"][0]]
    assert [name for name, _ in index.entries("cu130", "torch")] == files["torch"][2:]
    arm64 = {"python_version": "3.11", "platforms": "linux/arm64"}
    assert index.missing(plan(torch_version="2.10.0", **arm64), "aarch64") == []
    assert index.missing(plan(torch_version="2.10.0", **arm64), "x86_64") == ["torch 2.10.0"]
    cuda = {"accelerator": "cuda", "cuda_version": "auto", **arm64}
    assert index.missing(plan(torch_version="2.14.1", **cuda), "aarch64") == []


def test_wheel_tags():
    assert runs_on("torch-2.14.1-cp313-cp313-manylinux_2_28_x86_64.whl", "3.13")
    assert not runs_on("torch-2.14.1-cp313-cp313-manylinux_2_28_aarch64.whl", "3.13")
    assert not runs_on("torch-2.14.1-cp311-cp311-manylinux_2_28_x86_64.whl", "3.13")
    assert runs_on("nvidia_nvtx-13.0.85-py3-none-manylinux1_x86_64.whl", "3.12")
