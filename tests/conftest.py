import os
from collections import defaultdict
from pathlib import Path

import pytest
from combinations import BUILDS, with_defaults

from template_testing import timing
from template_testing.commands import TEMPLATE
from template_testing.network import this_host

IMAGE_TEST = "test_images.py::test_image_builds_and_runs"
# Each module's budget in the timing summary, in seconds of its tests' own time (setup, call and
# teardown, added up; workers run in parallel). The image tests time each image themselves.
MODULE_BUDGETS = {
    "test_generation.py": 900,  # every supported answer baked, with every linter
    "test_project_tests.py": 300,  # the project venv (torch) the first time, then fast layers
    "test_seam.py": 900,  # four other models through the suite (~100 s each, the ResNet ~175 s)
    "test_deploy.py": 300,  # checkov installs itself on its first run
    "test_images.py": 120,  # what is not an image build: compose config, one bake
}
OTHER_MODULE_BUDGET = 120


def pytest_addoption(parser):
    parser.addoption(
        "--shard",
        default="1/1",
        help="run only shard K of N of the collected tests, as K/N (CI splits the bakes)",
    )


def pytest_report_header(config):
    return this_host().describe()


def pytest_collection_modifyitems(config, items):
    k, n = (int(x) for x in config.getoption("shard").split("/"))
    if not 1 <= k <= n:
        raise pytest.UsageError(f"--shard {k}/{n}: K must be between 1 and N")
    if n > 1:
        keep = [item for i, item in enumerate(items) if i % n == k - 1]
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep


_module_seconds: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report):
    """Add each test's time to its module's phase (on the controller, reports from every
    worker), but the image builds', which are phases of their own."""
    if IMAGE_TEST not in report.nodeid:
        _module_seconds[report.nodeid.split("::")[0].rsplit("/", 1)[-1]] += report.duration


def pytest_sessionstart(session):
    """pytest alone starts its own timing record; under scripts/test it adds to the run's."""
    if not hasattr(session.config, "workerinput") and not os.environ.get(timing.RUN_VARIABLE):
        timing.start()


def pytest_sessionfinish(session):
    if hasattr(session.config, "workerinput"):  # a pytest-xdist worker: the controller records
        return
    for module, seconds in sorted(_module_seconds.items()):
        budget = MODULE_BUDGETS.get(module, OTHER_MODULE_BUDGET)
        timing.record(f"tests: {module}", seconds, budget)


def pytest_terminal_summary(terminalreporter):
    """Which image builds ran (and which ran the project's slow test layer), and why the others
    could not (their skip reasons)."""
    lines, slow_layers = [], set()
    for status in ("passed", "failed", "skipped"):
        for report in terminalreporter.stats.get(status, []):
            nodeid = getattr(report, "nodeid", "")
            if IMAGE_TEST not in nodeid or report.when not in ("call", "setup"):
                continue
            if report.when == "setup" and status != "skipped":
                continue
            build = nodeid.split("[", 1)[-1].rstrip("]")
            why = f": {report.longrepr[2].removeprefix('Skipped: ')}" if status == "skipped" else ""
            slow = dict(report.user_properties).get("slow_layer")
            if slow:
                slow_layers.add(slow)
                why = f" (and the project's slow test layer, for {slow})"
            lines.append(f"{'built' if status == 'passed' else status:>8}  {build}{why}")
    if lines:
        terminalreporter.section("image builds")
        for line in lines:
            terminalreporter.write_line(line)
        missing = sorted(set(slow_layer_families()) - slow_layers)
        if missing:
            terminalreporter.write_line(
                f"the project's slow test layer did not run natively for {', '.join(missing)}: "
                "no build of theirs was built natively on this host (GitHub's runners build "
                "every one; see .github/workflows)"
            )


def slow_layer_families() -> list[str]:
    """package manager/accelerator of every image build: each should run the slow layer once."""
    return [
        f"{answers['package_manager']}/{answers['accelerator']}"
        for answers in map(with_defaults, BUILDS)
    ]


@pytest.fixture
def bake(cookies):
    """Bake with the given answers; fail with cookiecutter's own error if baking fails."""

    def _bake(**answers: str) -> Path:
        result = cookies.bake(extra_context=answers, template=str(TEMPLATE))
        assert result.exception is None, f"{answers} failed to bake: {result.exception!r}"
        return Path(result.project_path)

    return _bake
