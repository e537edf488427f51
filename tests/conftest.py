from pathlib import Path

import pytest

from template_testing.commands import TEMPLATE
from template_testing.network import this_host

IMAGE_TEST = "test_images.py::test_image_builds_and_runs"


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


def pytest_terminal_summary(terminalreporter):
    """Which image builds ran, and why the others could not (their skip reasons)."""
    lines = []
    for status in ("passed", "failed", "skipped"):
        for report in terminalreporter.stats.get(status, []):
            nodeid = getattr(report, "nodeid", "")
            if IMAGE_TEST not in nodeid or report.when not in ("call", "setup"):
                continue
            if report.when == "setup" and status != "skipped":
                continue
            build = nodeid.split("[", 1)[-1].rstrip("]")
            why = f": {report.longrepr[2].removeprefix('Skipped: ')}" if status == "skipped" else ""
            lines.append(f"{'built' if status == 'passed' else status:>8}  {build}{why}")
    if lines:
        terminalreporter.section("image builds")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def bake(cookies):
    """Bake with the given answers; fail with cookiecutter's own error if baking fails."""

    def _bake(**answers: str) -> Path:
        result = cookies.bake(extra_context=answers, template=str(TEMPLATE))
        assert result.exception is None, f"{answers} failed to bake: {result.exception!r}"
        return Path(result.project_path)

    return _bake
