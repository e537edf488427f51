"""Print (or, with --write, put into README.md) the compatibility table made from torch_compat."""

import argparse
from pathlib import Path

from torch_compat import CPU_BUILD, load

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "<!-- compat-table:begin (python -m torch_compat.readme_table --write) -->"
END = "<!-- compat-table:end -->"


def table() -> str:
    compat = load()
    rows = [
        "| torch | Python | CUDA builds (auto = recommended) | PyPI's default build"
        " | torchvision | torchaudio | linux/arm64 wheels |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in compat.releases:
        cuda = ", ".join(f"**{c}**" if c == r.recommended_cuda else c for c in r.cuda_builds)
        pypi = f"CUDA {r.pypi_cuda}"
        if r.pypi_arm64 != r.pypi_cuda:
            pypi += f" (aarch64: {build_name(r.pypi_arm64)})"
        arm64 = ", ".join(build_name(b) for b in r.arm64["torch"])
        for companion in ("torchvision", "torchaudio"):
            if getattr(r, companion):
                builds = ", ".join(map(build_name, r.builds_on("linux/arm64", companion)))
                arm64 += f"; {companion}: {builds or 'none'}"
        rows.append(
            f"| {r.version} | {r.python[0]} to {r.python[-1]} | {cuda} | {pypi} "
            f"| {r.torchvision or '—'} | {r.torchaudio or '—'} | {arm64} |"
        )
    drivers = ", ".join(
        f"CUDA {cuda} ≥ {facts['min_linux_driver']}" for cuda, facts in compat.raw["cuda"].items()
    )
    notes = [
        "",
        f"Minimum NVIDIA Linux driver: {drivers}.",
        "— : no release exists (torchaudio published nothing after 2.11.0; no torchvision pins "
        "torch 2.15 yet).",
        "linux/amd64 has wheels of every build above. The `platforms` answer (default: every "
        "platform with wheels for the chosen build and companions) is checked against the last "
        "column.",
        f"Facts checked on {compat.raw['checked_on']}; sources: `torch_compat/releases.json`.",
    ]
    return "\n".join(rows + notes)


def build_name(build: str) -> str:
    return "CPU" if build == CPU_BUILD else f"CUDA {build}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="update README.md in place")
    args = parser.parse_args()
    if not args.write:
        print(table())
        return
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    readme.write_text(text[:start] + "\n" + table() + "\n" + text[end:], encoding="utf-8")


if __name__ == "__main__":
    main()
