"""Turn poetry.lock into hash-pinned requirement files for pip, in three layers.

    torch.txt  the torch packages and everything they pull in (the big, rarely changing layer)
    main.txt   the other runtime dependencies
    dev.txt    the dev group (tests and linters), for the image's test stage

`poetry export` can list one package twice when Poetry splits it by markers: a meta-package
pins a library exactly, another package asks for any version of it, and the lock holds a second,
newer version under an overlapping marker (torch's CUDA 13 wheels do this). pip refuses both
lines; where that happens this keeps the version that a locked package pins exactly.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: Poetry brings tomli
    import tomli as tomllib

TORCH_PACKAGES = {"torch", "torchvision", "torchaudio"}
REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^ ;\\]+)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def export(*groups: str) -> list[str]:
    """Requirement entries (each with its --hash continuation lines) for the given groups."""
    args = ["poetry", "export", "--format", "requirements.txt", "--without-urls"]
    args += ["--only", ",".join(groups)]
    text = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    entries: list[str] = []
    for line in text.splitlines():
        if REQUIREMENT.match(line):
            entries.append(line)
        elif line.startswith(" ") and entries:
            entries[-1] += "\n" + line
    return entries


def exact_pins(lock: dict) -> set[tuple[str, str]]:
    """(name, version) for every dependency that some locked package pins with ==."""
    pins = set()
    for package in lock["package"]:
        for name, spec in package.get("dependencies", {}).items():
            version = spec.get("version", "") if isinstance(spec, dict) else spec
            if isinstance(version, str) and version.startswith("=="):
                pins.add((normalize(name), version[2:].removesuffix(".*")))
    return pins


def dedupe(entries: list[str], pins: set[tuple[str, str]]) -> list[str]:
    by_name: dict[str, list[str]] = {}
    for entry in entries:
        by_name.setdefault(normalize(REQUIREMENT.match(entry)["name"]), []).append(entry)
    kept = []
    for name, versions in by_name.items():
        if len(versions) > 1:
            pinned = [e for e in versions if (name, REQUIREMENT.match(e)["version"]) in pins]
            if len(pinned) != 1:
                found = ", ".join(REQUIREMENT.match(e)["version"] for e in versions)
                sys.exit(f"export_requirements: {name} is locked as {found}; cannot tell which one")
            print(f"export_requirements: {name}: kept the exact pin of {pinned[0].split(' ')[0]}")
            versions = pinned
        kept += versions
    return kept


def closure(lock: dict, roots: set[str]) -> set[str]:
    """Names of the roots and everything they depend on, per the lock."""
    deps = {
        normalize(p["name"]): {normalize(d) for d in p.get("dependencies", {})}
        for p in lock["package"]
    }
    seen, todo = set(), [r for r in roots if r in deps]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += deps.get(name, set()) - seen
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, required=True)
    args = parser.parse_args()
    lock = tomllib.loads(Path("poetry.lock").read_text(encoding="utf-8"))
    pins = exact_pins(lock)
    main_entries = dedupe(export("main"), pins)
    dev_entries = dedupe(export("dev"), pins)
    torch_names = closure(lock, TORCH_PACKAGES)

    def name_of(entry: str) -> str:
        return normalize(REQUIREMENT.match(entry)["name"])

    main_names = {name_of(e) for e in main_entries}
    layers = {
        "torch.txt": [e for e in main_entries if name_of(e) in torch_names],
        "main.txt": [e for e in main_entries if name_of(e) not in torch_names],
        "dev.txt": [e for e in dev_entries if name_of(e) not in main_names],
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for filename, entries in layers.items():
        text = "".join(entry + "\n" for entry in entries)
        (args.output_dir / filename).write_text(text, encoding="utf-8")
        print(f"export_requirements: {filename}: {len(entries)} packages")


if __name__ == "__main__":
    main()
