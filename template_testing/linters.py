"""The linters every bake and the template's own workflows must pass."""

from __future__ import annotations

import functools
import gzip
import json
import shutil
import tomllib
from pathlib import Path

import jsonschema
import yaml

from .commands import TEMPLATE, sh, tool

ACTIONLINT_MISSING = (
    "actionlint is not installed: `pip install --group actionlint` (the template's GitHub "
    "workflow does); its sdist downloads actionlint from GitHub's releases, which this host "
    "cannot reach"
)


def actionlint() -> str | None:
    found = tool("actionlint")
    return found if Path(found).is_file() or shutil.which(found) else None


def workflows_clean(root: Path) -> None:
    """zizmor (offline, nothing of medium severity or worse) and, where installed, actionlint
    (no error) on the workflows under root/.github/workflows."""
    sh(tool("zizmor"), "--offline", "--min-severity", "medium", "--no-progress", ".", cwd=root)
    if linter := actionlint():
        sh(linter, "-no-color", cwd=root)


# checkov's findings the generated manifests keep, each with the reason.
CHECKOV_SKIPS = {
    "CKV_K8S_43": "images by digest: the image is set in one place, kustomization.yaml's "
    "`images:`, which takes a `digest:` at release time; a template cannot know it",
}
KUBERNETES_VERSION = "1.31.0"  # the oldest minor the cloud providers still support


def kustomize() -> str:
    """kustomize on PATH (scripts/test installs Debian's under CI=true)."""
    found = shutil.which("kustomize")
    if not found:
        raise AssertionError(
            "the manifest tests need kustomize on PATH: `apt-get install kustomize` (Debian, "
            "Ubuntu), `brew install kustomize`, or https://kubectl.docs.kubernetes.io/installation/"
        )
    return found


KSERVE_SCHEMA = (
    Path(__file__).parent / "schemas" / "kserve-v0.20.0-inferenceservice-v1beta1.json.gz"
)


def strict(schema: dict) -> dict:
    """A CRD's schema as `kubectl --validate=strict` reads it: an object with properties takes no
    other field, unless it says it keeps unknown fields."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [strict(item) for item in schema]
    return schema


@functools.cache
def kserve_validator() -> jsonschema.Draft7Validator:
    """KServe's published CRD schema (strictly), read once."""
    return jsonschema.Draft7Validator(
        strict(json.loads(gzip.decompress(KSERVE_SCHEMA.read_bytes())))
    )


def kserve_problems(document: dict) -> list[str]:
    """Where an InferenceService breaks KServe's published CRD schema (strictly); [] if nowhere."""
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in kserve_validator().iter_errors(document)
    ]


def manifests_valid(project: Path) -> str:
    """Render deploy/k8s with kustomize and validate it offline against Kubernetes' schemas
    (and KServe's, for an InferenceService); return the rendered YAML."""
    rendered = sh(kustomize(), "build", str(project / "deploy" / "k8s"))
    documents = list(yaml.safe_load_all(rendered))
    for document in documents:
        if document["kind"] == "InferenceService":
            problems = kserve_problems(document)
            assert not problems, f"InferenceService {document['metadata']['name']}: {problems[:10]}"
    plain = [d for d in documents if d["kind"] != "InferenceService"]  # not in Kubernetes' schemas
    out = project / ".rendered-manifests.yaml"
    out.write_text(yaml.safe_dump_all(plain))
    try:
        sh(tool("kubernetes-validate"), "-k", KUBERNETES_VERSION, "--strict", "--quiet", str(out))
    finally:
        out.unlink()
    return rendered


def checkov_clean(folder: Path) -> None:
    """checkov over the Kubernetes manifests in `folder`: no failed check but CHECKOV_SKIPS."""
    groups = tomllib.loads((TEMPLATE / "pyproject.toml").read_text())["dependency-groups"]
    (checkov,) = groups["checkov"]
    sh(
        tool("uv"), "tool", "run", "--from", checkov, "checkov", "--directory", str(folder),
        "--framework", "kubernetes", "--compact", "--quiet",
        "--skip-check", ",".join(CHECKOV_SKIPS),
        timeout=900,
    )  # fmt: skip
