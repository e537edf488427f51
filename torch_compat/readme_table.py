"""Print (or, with --write, put into README.md) the compatibility table made from torch_compat."""

import argparse
from pathlib import Path

from torch_compat import load

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "<!-- compat-table:begin (python -m torch_compat.readme_table --write) -->"
END = "<!-- compat-table:end -->"


def table() -> str:
    compat = load()
    rows = [
        "| torch | Python | CUDA builds (auto = recommended) | PyPI's default build"
        " | torchvision | torchaudio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in compat.releases:
        cuda = ", ".join(f"**{c}**" if c == r.recommended_cuda else c for c in r.cuda_builds)
        rows.append(
            f"| {r.version} | {r.python[0]} to {r.python[-1]} | {cuda} | CUDA {r.pypi_cuda} "
            f"| {r.torchvision or '—'} | {r.torchaudio or '—'} |"
        )
    drivers = ", ".join(
        f"CUDA {cuda} ≥ {facts['min_linux_driver']}" for cuda, facts in compat.raw["cuda"].items()
    )
    notes = [
        "",
        f"Minimum NVIDIA Linux driver: {drivers}.",
        "— : no release exists (torchaudio published nothing after 2.11.0; no torchvision pins "
        "torch 2.15 yet).",
        f"Facts checked on {compat.raw['checked_on']}; sources: `torch_compat/releases.json`.",
    ]
    return "\n".join(rows + notes)


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
