"""Refuse bad answers before cookiecutter writes anything.

On failure: one message on stderr naming the bad value and the valid ones, exit status 1;
cookiecutter then removes the half-made project folder. Never prompts.
"""

import json
import keyword
import re
import sys

sys.path.insert(0, {{ template_root | tojson }})  # for torch_compat

from torch_compat import CompatError, load  # noqa: E402

ANSWERS = json.loads({{ cookiecutter | tojson | tojson }})

# A slug is a folder, a distribution and a Docker image name: lowercase letters, digits, single dashes.
SLUG = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
VERSION = re.compile(r"^\d+(\.\d+){1,2}([ab]|rc)?\d*$")
# Quoted into TOML, YAML and compose's ${VAR:-default}: no spaces, quotes, '$' or braces.
URL = re.compile(r"^https?://[^\s\"'${}\\]+$")
YES_NO = ("yes", "no")


def name_errors(a: dict) -> list[str]:
    errors = []
    if not a["project_name"].strip() or "\n" in a["project_name"]:
        errors.append(f"project_name {a['project_name']!r} must be one non-empty line")
    if any(c in a["description"] for c in '"\\\n'):
        errors.append(
            f"description {a['description']!r} may not hold double quotes, backslashes or line "
            "breaks: it becomes the package docstring"
        )
    if not SLUG.match(a["project_slug"]):
        errors.append(
            f"project_slug {a['project_slug']!r} is not valid: use lowercase letters, digits "
            "and single dashes, starting with a letter (e.g. 'digit-classifier')"
        )
    pkg = a["package_name"]
    if not pkg.isidentifier() or keyword.iskeyword(pkg) or pkg != pkg.lower():
        errors.append(
            f"package_name {pkg!r} is not valid: use a lowercase Python identifier that is not "
            "a keyword (e.g. 'digit_classifier')"
        )
    elif pkg in sys.stdlib_module_names or pkg in {"torch", "torchvision", "torchaudio", "fastapi"}:
        errors.append(f"package_name {pkg!r} would shadow the module of that name; choose another")
    if not EMAIL.match(a["author_email"]):
        errors.append(f"author_email {a['author_email']!r} is not an e-mail address (name@domain.tld)")
    if not VERSION.match(a["version"]):
        errors.append(f"version {a['version']!r} is not a release number like 0.1.0")
    for key in ("include_torchvision", "include_torchaudio"):
        if a[key] not in YES_NO:
            errors.append(f"{key} {a[key]!r} is not valid; choose one of: yes, no")
    if not URL.match(a["torch_index_url"]):
        errors.append(f"torch_index_url {a['torch_index_url']!r} is not an http(s) URL")
    if a["package_index_url"] and not URL.match(a["package_index_url"]):
        errors.append(
            f"package_index_url {a['package_index_url']!r} is not an http(s) URL "
            "(leave it empty for PyPI)"
        )
    return errors


def main() -> int:
    errors = name_errors(ANSWERS)
    if not errors:
        try:
            load().plan(ANSWERS)
        except CompatError as exc:
            errors.append(str(exc))
    if errors:
        print("ERROR: " + "; ".join(errors), file=sys.stderr)
        print("Nothing was generated.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
