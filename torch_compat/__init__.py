"""The template's torch compatibility data (releases.json) and the rules that read it.

Imported by the cookiecutter hooks, the template tests and torch_compat/readme_table.py.
Standard library only: the hooks run with whatever Python runs cookiecutter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

DATA_FILE = Path(__file__).with_name("releases.json")
ANSWERS_FILE = Path(__file__).resolve().parents[1] / "cookiecutter.json"
AUTO_CUDA = "auto"
AUTO_PLATFORMS = "auto"  # every Linux platform the chosen build and companions have wheels for
CPU_BUILD = "cpu"  # a build's name in the data: "cpu" or a CUDA version
COMPANIONS = ("torchvision", "torchaudio")
PYPI_SIMPLE = "https://pypi.org/simple/"  # what an empty package_index_url answer means
ACCELERATORS = ("cpu", "cuda", "cpu+cuda")  # cpu+cuda: both builds in one lock (uv only)
PACKAGE_MANAGERS = ("poetry", "uv")


def default_answer(key: str) -> str:
    """cookiecutter.json's default for a text answer."""
    return json.loads(ANSWERS_FILE.read_text(encoding="utf-8"))[key]


class CompatError(ValueError):
    """A torch x Python x accelerator combination that does not exist."""


@dataclass(frozen=True)
class TorchRelease:
    version: str
    python: tuple[str, ...]
    cuda_builds: tuple[str, ...]
    recommended_cuda: str
    pypi_cuda: str
    torchvision: str | None
    torchaudio: str | None
    arm64: dict[str, tuple[str, ...]]  # package -> builds with linux/arm64 wheels
    pypi_arm64: str  # the build PyPI's aarch64 wheels are: "cpu" or a CUDA version

    def builds_on(self, platform: str, package: str) -> tuple[str, ...]:
        """The builds ("cpu", CUDA versions) of `package` with wheels for `platform`."""
        if package != "torch" and getattr(self, package) is None:
            return ()
        if platform == "linux/arm64":
            return self.arm64.get(package) or ()
        return (CPU_BUILD, *self.cuda_builds)  # linux/amd64: every build (see releases.json)


@dataclass(frozen=True)
class TorchPlan:
    """Everything the generated project needs to know about its one torch build."""

    torch: str
    torchvision: str | None
    torchaudio: str | None
    python: str
    accelerator: str
    cuda: str | None
    index_suffix: str
    index_base: str  # the torch index without the build: https://download.pytorch.org/whl
    package_index: str  # the simple index for every other package: the answer, or PyPI
    min_linux_driver: str | None
    debian_release: str
    platforms: tuple[str, ...] = ("linux/amd64",)  # Docker platforms, e.g. linux/arm64
    package_manager: str = "poetry"

    @property
    def variants(self) -> tuple[TorchPlan, ...]:
        """The one-build plans an image is built from: this plan, or for cpu+cuda its CPU and
        its CUDA build (the lock holds both; a build argument picks one)."""
        if self.accelerator != "cpu+cuda":
            return (self,)
        cpu = replace(self, accelerator="cpu", cuda=None, index_suffix=CPU_BUILD,
                      min_linux_driver=None)  # fmt: skip
        return (cpu, replace(self, accelerator="cuda"))

    @property
    def index_url(self) -> str:
        """The index of this build: the base and the build's suffix."""
        return f"{self.index_base}/{self.index_suffix}/"

    @property
    def source_name(self) -> str:
        return f"pytorch-{self.index_suffix}"

    @property
    def packages(self) -> dict[str, str]:
        """Package name -> exact version, for every package taken from the torch index."""
        pins = {"torch": self.torch, "torchvision": self.torchvision, "torchaudio": self.torchaudio}
        return {name: version for name, version in pins.items() if version}


@dataclass(frozen=True)
class Compat:
    raw: dict

    @property
    def releases(self) -> list[TorchRelease]:
        return [
            TorchRelease(
                version=r["version"],
                python=tuple(r["python"]),
                cuda_builds=tuple(r["cuda_builds"]),
                recommended_cuda=r["recommended_cuda"],
                pypi_cuda=r["pypi_cuda"],
                torchvision=r["torchvision"],
                torchaudio=r["torchaudio"],
                arm64={k: tuple(v) for k, v in r["arm64"].items() if v is not None},
                pypi_arm64=r["pypi_arm64"],
            )
            for r in self.raw["torch"]
        ]

    @property
    def python_versions(self) -> list[str]:
        return list(self.raw["python"])

    @property
    def platforms(self) -> list[str]:
        return [p for p in self.raw["platforms"] if not p.startswith("$")]

    def machine(self, platform: str) -> str:
        """The Linux machine name (`uname -m`) of a Docker platform: linux/arm64 -> aarch64."""
        return self.raw["platforms"][platform]["machine"]

    def index_suffix(self, build: str) -> str:
        """A build's folder on the torch index: cpu, cu130, ..."""
        return build if build == CPU_BUILD else self.raw["cuda"][build]["index_suffix"]

    def github_runner(self, platform: str) -> str:
        """The GitHub-hosted runner that builds `platform` natively."""
        return self.raw["platforms"][platform]["github_runner"]

    @property
    def cuda_versions(self) -> list[str]:
        return list(self.raw["cuda"])

    def release(self, version: str) -> TorchRelease:
        for release in self.releases:
            if release.version == version:
                return release
        offered = ", ".join(r.version for r in self.releases)
        raise CompatError(f"torch_version {version!r} is not offered; choose one of: {offered}")

    def plan(self, answers: Mapping[str, str]) -> TorchPlan:
        """Resolve the template's answers (cookiecutter variable names; the torch index and
        companions may be left out) to one torch build, or raise CompatError saying why not."""
        torch_version, python_version = answers["torch_version"], answers["python_version"]
        accelerator = answers["accelerator"]
        package_manager = answers.get("package_manager", "poetry")
        if package_manager not in PACKAGE_MANAGERS:
            raise CompatError(
                f"package_manager {package_manager!r} is not offered; choose one of: "
                f"{', '.join(PACKAGE_MANAGERS)}"
            )
        cuda_version = answers.get("cuda_version", AUTO_CUDA)
        torch_index_url = answers.get("torch_index_url", default_answer("torch_index_url"))
        with_torchvision = answers.get("include_torchvision") == "yes"
        with_torchaudio = answers.get("include_torchaudio") == "yes"
        release = self.release(torch_version)
        if python_version not in release.python:
            raise CompatError(
                f"torch {release.version} has no wheels for Python {python_version}; "
                f"choose python_version from: {', '.join(release.python)}"
            )
        cuda = self.cuda_build(release, accelerator, cuda_version, package_manager)
        suffix = self.index_suffix(cuda) if cuda else CPU_BUILD
        driver = self.raw["cuda"][cuda]["min_linux_driver"] if cuda else None
        self.check_companions(release, with_torchvision, with_torchaudio)
        builds = [CPU_BUILD, cuda] if accelerator == "cpu+cuda" else [cuda or CPU_BUILD]
        companions = {"torchvision": with_torchvision, "torchaudio": with_torchaudio}
        packages = ["torch", *(name for name in COMPANIONS if companions[name])]
        answer = answers.get("platforms", AUTO_PLATFORMS)
        # cpu+cuda: the platforms both builds have (linux/amd64 has every build).
        found = [self.platforms_for(release, build, packages, answer) for build in builds]
        platforms = tuple(p for p in found[-1] if all(p in f for f in found))
        if not torch_index_url.strip():
            raise CompatError(
                f"torch_index_url is empty; the default is {default_answer('torch_index_url')}"
            )
        return TorchPlan(
            torch=release.version,
            torchvision=release.torchvision if with_torchvision else None,
            torchaudio=release.torchaudio if with_torchaudio else None,
            python=python_version,
            accelerator=accelerator,
            cuda=cuda,
            index_suffix=suffix,
            index_base=torch_index_url.rstrip("/"),
            package_index=answers.get("package_index_url") or PYPI_SIMPLE,
            min_linux_driver=driver,
            debian_release=self.raw["python"][python_version]["debian_release"],
            platforms=platforms,
            package_manager=package_manager,
        )

    def cuda_build(
        self, release: TorchRelease, accelerator: str, cuda_version: str, package_manager: str
    ) -> str | None:
        """The CUDA build the answers ask for (None for a CPU project), or CompatError."""
        if accelerator == "cpu":
            if cuda_version != AUTO_CUDA:
                raise CompatError(
                    f"cuda_version {cuda_version!r} needs accelerator 'cuda'; "
                    f"with accelerator 'cpu' leave cuda_version at {AUTO_CUDA!r}"
                )
            return None
        if accelerator not in ACCELERATORS:
            raise CompatError(
                f"accelerator {accelerator!r} is not offered; choose one of: "
                f"{', '.join(ACCELERATORS)}"
            )
        if accelerator == "cpu+cuda" and package_manager != "uv":
            raise CompatError(
                "accelerator 'cpu+cuda' needs package_manager 'uv': Poetry cannot hold two "
                "torch builds in one lock (python-poetry/poetry#6409); answer "
                "package_manager=uv, or accelerator cpu or cuda"
            )
        cuda = release.recommended_cuda if cuda_version == AUTO_CUDA else cuda_version
        if cuda not in release.cuda_builds:
            raise CompatError(
                f"torch {release.version} has no CUDA {cuda} build; choose cuda_version from: "
                f"{AUTO_CUDA} (= {release.recommended_cuda}), {', '.join(release.cuda_builds)}"
            )
        return cuda

    def check_companions(
        self, release: TorchRelease, with_torchvision: bool, with_torchaudio: bool
    ) -> None:
        """CompatError when a companion asked for has no release matching torch's."""
        for wanted, name, version in (
            (with_torchvision, "torchvision", release.torchvision),
            (with_torchaudio, "torchaudio", release.torchaudio),
        ):
            if wanted and version is None:
                having = [r.version for r in self.releases if getattr(r, name)]
                raise CompatError(
                    f"{name} has no release for torch {release.version}; set include_{name}=no "
                    f"or choose torch_version from: {', '.join(having)}"
                )

    def platforms_for(
        self, release: TorchRelease, build: str, packages: list[str], answer: str
    ) -> tuple[str, ...]:
        """The platforms answer ('auto' or a comma list) checked against the wheels of `build`
        of `packages`; raises CompatError naming what is missing and the valid choices."""
        having = [
            p for p in self.platforms if all(build in release.builds_on(p, n) for n in packages)
        ]
        if answer.strip() == AUTO_PLATFORMS:
            return tuple(having)
        asked = [p.strip() for p in answer.split(",") if p.strip()]
        unknown = [p for p in asked if p not in self.platforms]
        if unknown or not asked:
            raise CompatError(
                f"platforms {answer!r} is not valid; answer {AUTO_PLATFORMS} or a comma list of: "
                f"{', '.join(self.platforms)}"
            )
        for platform in asked:
            missing = [n for n in packages if build not in release.builds_on(platform, n)]
            if missing:
                what = "CPU" if build == CPU_BUILD else f"CUDA {build}"
                others = [c for c in release.builds_on(platform, "torch") if c != CPU_BUILD]
                hint = f"choose platforms from: {', '.join(having)}"
                if missing == ["torch"] and others:
                    hint += (
                        f"; or cuda_version from: {', '.join(others)} (they have {platform} wheels)"
                    )
                elif missing != ["torch"]:
                    hint += "; or " + " and ".join(
                        f"include_{n}=no" for n in missing if n != "torch"
                    )
                raise CompatError(
                    f"torch {release.version}'s {what} build has no {platform} wheels of "
                    f"{', '.join(missing)}; {hint}"
                )
        return tuple(dict.fromkeys(asked))


def load(path: Path = DATA_FILE) -> Compat:
    return Compat(json.loads(path.read_text(encoding="utf-8")))
