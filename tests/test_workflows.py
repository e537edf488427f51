"""The template's own GitHub workflow: lint-clean, hardened, and building exactly BUILDS."""

import json
import re
import sys

import pytest
import yaml
from combinations import BUILDS, build_id

from template_testing.commands import TEMPLATE, sh, tool
from template_testing.linters import ACTIONLINT_MISSING, actionlint, workflows_clean

WORKFLOW = TEMPLATE / ".github" / "workflows" / "ci.yml"
BAKED_WORKFLOWS = TEMPLATE / "{{cookiecutter.project_slug}}" / ".github" / "workflows"
BAKED_WORKFLOW = BAKED_WORKFLOWS / "ci.yml"
BAKED_RELEASE = BAKED_WORKFLOWS / "release.yml"
PINNED = re.compile(r"^\s+- uses: [\w.-]+/[\w.-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$")


def test_template_workflow_passes_zizmor_and_actionlint():
    sh(tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW))
    workflows_clean(TEMPLATE)


def test_actionlint_is_installed():
    """Skipped, with the reason, where actionlint cannot be installed; every other check of a
    workflow runs actionlint when it is (the template's GitHub workflow installs it)."""
    if actionlint() is None:
        pytest.skip(ACTIONLINT_MISSING)


@pytest.mark.parametrize(
    "workflow", [WORKFLOW, BAKED_WORKFLOW, BAKED_RELEASE], ids=["template", "baked", "release"]
)
def test_every_action_is_pinned_to_a_commit_with_its_version(workflow):
    uses = [line for line in workflow.read_text().splitlines() if "uses:" in line]
    assert uses
    assert [line for line in uses if not PINNED.match(line)] == []


def test_one_image_job_per_build():
    """The image matrix is what tests/combinations.py prints: BUILDS, never a copy of it."""
    workflow = yaml.safe_load(WORKFLOW.read_text())
    images = workflow["jobs"]["images"]
    assert images["strategy"]["matrix"]["include"] == "${{ fromJSON(needs.builds.outputs.ids) }}"
    assert images["runs-on"] == "${{ matrix.runner }}"
    assert "python tests/combinations.py" in workflow["jobs"]["builds"]["steps"][-1]["run"]
    printed = json.loads(sh(sys.executable, str(TEMPLATE / "tests" / "combinations.py")))
    assert [row["build"] for row in printed] == [build_id(b) for b in BUILDS]
    # arm64 builds on GitHub's arm runners, natively.
    runners = {row["build"]: row["runner"] for row in printed}
    arm64 = [build_id(b) for b in BUILDS if b.get("platforms") == "linux/arm64"]
    assert arm64 and {runners[b] for b in arm64} == {"ubuntu-24.04-arm"}
    assert {r for b, r in runners.items() if b not in arm64} == {"ubuntu-24.04"}


def test_least_privilege_and_no_persisted_credentials():
    for path in (WORKFLOW, BAKED_WORKFLOW, BAKED_RELEASE):
        text = path.read_text()
        assert "permissions:\n  contents: read\n" in text
        checkouts = text.count("actions/checkout@")
        assert text.count("persist-credentials: false") == checkouts > 0
