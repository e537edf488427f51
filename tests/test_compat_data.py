"""The compatibility data is consistent, offered as cookiecutter choices, and in the README."""

import itertools
import json
import re

import pytest
from combinations import ARM64, BUILDS, EXPECTED, with_defaults

from template_testing.commands import TEMPLATE
from torch_compat import (
    ACCELERATORS,
    AUTO_CUDA,
    AUTO_PLATFORMS,
    CPU_BUILD,
    PACKAGE_MANAGERS,
    CompatError,
    load,
    readme_table,
)

pytestmark = pytest.mark.quick  # the data every other test reads

COMPAT = load()
CHOICES = json.loads((TEMPLATE / "cookiecutter.json").read_text())
VERSION = re.compile(r"^\d+\.\d+\.\d+$")


def minor(version: str) -> tuple[int, int]:
    major, minor_, *_ = version.split(".")
    return int(major), int(minor_)


def test_every_fact_names_a_known_source():
    sources = COMPAT.raw["sources"]
    for release in COMPAT.raw["torch"]:
        for key in ("python", "cuda_builds", "pypi_cuda", "torchvision", "torchaudio", "arm64"):
            cited_all = release[f"{key}_source"]
            for cited in cited_all.split("; ") if key == "arm64" else [cited_all]:
                assert cited.split(":")[0] in sources, f"{release['version']} {key}: {cited}"
    for table in ("python", "cuda", "platforms"):
        for name, facts in COMPAT.raw[table].items():
            assert name.startswith("$") or facts["source"] in sources


def test_releases_are_the_six_newest_minors_newest_first_at_one_patch_each():
    versions = [r.version for r in COMPAT.releases]
    assert all(VERSION.match(v) for v in versions)
    minors = [minor(v) for v in versions]
    assert minors == sorted(minors, reverse=True) and len(set(minors)) == len(minors) >= 6
    assert [a[1] - b[1] for a, b in itertools.pairwise(minors)] == [1] * (len(minors) - 1)


def test_release_facts_are_internally_consistent():
    for r in COMPAT.releases:
        assert r.recommended_cuda in r.cuda_builds, r.version
        assert r.pypi_cuda in COMPAT.cuda_versions, r.version
        assert set(r.cuda_builds) <= set(COMPAT.cuda_versions), r.version
        assert set(r.python) <= set(COMPAT.python_versions), r.version
        assert list(r.python) == sorted(r.python, key=minor), r.version
        if r.torchvision:  # torchvision 0.N pairs with torch 2.(N-15)
            assert minor(r.torchvision)[1] == minor(r.version)[1] + 15, r.version
        if r.torchaudio:
            assert minor(r.torchaudio) == minor(r.version), r.version
            assert minor(r.version) <= (2, 11), "torchaudio has no release after 2.11.0"
        # arm64 has a subset of the builds, a companion only where it has a release, and
        # PyPI's aarch64 wheel is one of them (the offline fallback serves it as that build).
        builds = {CPU_BUILD, *r.cuda_builds}
        assert set(r.arm64) <= {"torch", "torchvision", "torchaudio"}, r.version
        for package, arm64_builds in r.arm64.items():
            assert set(arm64_builds) <= builds, (r.version, package)
            assert package == "torch" or getattr(r, package), (r.version, package)
        assert r.pypi_arm64 in r.arm64["torch"], r.version
        assert r.pypi_arm64 == (CPU_BUILD if minor(r.version) <= (2, 10) else r.pypi_cuda)


def test_data_matches_the_hand_written_expectations():
    assert [r.version for r in COMPAT.releases] == list(EXPECTED)
    for r in COMPAT.releases:
        expected = EXPECTED[r.version]
        assert r.python == expected["python"]
        assert expected["cuda"][AUTO_CUDA] == r.recommended_cuda
        assert set(expected["cuda"]) - {AUTO_CUDA} == set(r.cuda_builds)
        assert (r.torchvision, r.torchaudio) == (expected["torchvision"], expected["torchaudio"])
        for package in ("torch", "torchvision", "torchaudio"):
            assert set(r.builds_on(ARM64, package)) == expected["arm64"].get(package, set())
            every_build = (
                {CPU_BUILD, *r.cuda_builds} if package == "torch" or getattr(r, package) else set()
            )
            assert set(r.builds_on("linux/amd64", package)) == every_build


def test_platforms_default_to_every_one_with_wheels():
    answers = {"torch_version": "2.14.1", "python_version": "3.12", "accelerator": "cuda"}
    assert COMPAT.plan(answers).platforms == ("linux/amd64", ARM64)
    assert COMPAT.plan({**answers, "cuda_version": "13.2"}).platforms == ("linux/amd64",)
    cpu = {**answers, "accelerator": "cpu", "torch_version": "2.11.0"}
    assert COMPAT.plan({**cpu, "include_torchvision": "yes"}).platforms == ("linux/amd64", ARM64)
    assert COMPAT.plan({**cpu, "include_torchaudio": "yes"}).platforms == ("linux/amd64",)
    assert COMPAT.plan({**cpu, "platforms": " linux/arm64 , linux/amd64"}).platforms == (
        ARM64,
        "linux/amd64",
    )
    assert [COMPAT.machine(p) for p in COMPAT.platforms] == ["x86_64", "aarch64"]


def test_cookiecutter_choices_offer_exactly_the_data():
    assert CHOICES["torch_version"] == [r.version for r in COMPAT.releases]
    # Free text, so that the prompt can list the versions in order and still default to one in
    # the middle (cookiecutter's default choice is always the first); pre_gen checks the answer.
    prompt = json.dumps(CHOICES["__prompts__"]["python_version"])
    assert re.findall(r"3\.\d+", prompt) == sorted(COMPAT.python_versions, key=minor)
    assert CHOICES["cuda_version"][0] == AUTO_CUDA
    assert sorted(CHOICES["cuda_version"][1:]) == sorted(COMPAT.cuda_versions)
    assert CHOICES["accelerator"] == list(ACCELERATORS)
    assert CHOICES["package_manager"] == list(PACKAGE_MANAGERS)
    assert CHOICES["platforms"] == AUTO_PLATFORMS
    assert all(p in CHOICES["__prompts__"]["platforms"] for p in COMPAT.platforms)
    # The defaults (first choices) make a project that exists.
    COMPAT.plan(
        {key: CHOICES[key][0] for key in ("torch_version", "accelerator")}
        | {"python_version": CHOICES["python_version"]}
    )


def test_every_cuda_build_is_offered_by_some_release():
    offered = {c for r in COMPAT.releases for c in r.cuda_builds}
    assert offered == set(COMPAT.cuda_versions)


def test_plan_explains_a_missing_build():
    with pytest.raises(CompatError, match=r"no CUDA 12\.8 build; choose cuda_version from: auto"):
        COMPAT.plan(
            {
                "torch_version": "2.14.1",
                "python_version": "3.11",
                "accelerator": "cuda",
                "cuda_version": "12.8",
            }
        )


def test_readme_table_is_generated_from_the_data():
    readme = (TEMPLATE / "README.md").read_text()
    begin, end = readme_table.BEGIN, readme_table.END
    section = readme[readme.index(begin) + len(begin) : readme.index(end)]
    assert section.strip() == readme_table.table().strip(), (
        "README table is stale: run python -m torch_compat.readme_table --write"
    )


def test_image_builds_cover_every_option():
    builds = [with_defaults(b) for b in BUILDS]
    for build in builds:
        COMPAT.plan(build)  # each one exists
    resolved_cuda = {COMPAT.plan(b).cuda for b in builds} - {None}
    assert resolved_cuda == set(COMPAT.cuda_versions)
    assert {b["python_version"] for b in builds} == set(COMPAT.python_versions)
    for key in ("torch_version", "accelerator", "package_manager"):
        assert {b[key] for b in builds} == set(CHOICES[key]), key
    for key in ("include_torchvision", "include_torchaudio"):
        assert {b[key] for b in builds} == {"yes", "no"}, key
    # arm64 alone, each accelerator; the others take every platform (built for the host's).
    arm64 = [COMPAT.plan(b) for b in builds if b["platforms"] == ARM64]
    assert {p.accelerator for p in arm64} == {"cpu", "cuda", "cpu+cuda"}
    assert {b["platforms"] for b in builds} == {AUTO_PLATFORMS, ARM64}
    # uv: each accelerator, and both architectures.
    uv = [b for b in builds if b["package_manager"] == "uv"]
    assert {COMPAT.plan(b).accelerator for b in uv} == {"cpu", "cuda", "cpu+cuda"}
    assert {b["platforms"] for b in uv} == {AUTO_PLATFORMS, ARM64}
    assert 8 <= len(builds) <= 14
