"""The run's timing summary: every phase against its budget and the disk it left; a phase over
its budget fails the run."""

import pytest

from template_testing import timing

pytestmark = pytest.mark.quick  # the summary every run prints


def test_a_phase_over_its_budget_fails_the_report(tmp_path, capsys):
    path = tmp_path / "timings.tsv"
    timing.start(path)
    timing.record("bakes", 30, 60, path)
    assert timing.report(path) == 0
    timing.record("image: cpu", 700, 660, path)
    assert timing.report(path) == 1
    out = capsys.readouterr().out
    assert "image: cpu" in out and "OVER BUDGET" in out and "least disk free:" in out
    assert [p.name for p in timing.phases(path)] == ["bakes", "image: cpu"]


def test_nothing_recorded_is_not_a_failure(tmp_path):
    assert timing.report(tmp_path / "none.tsv") == 0
