"""Every unsupported answer is refused with one clear message, and nothing is left behind."""

import subprocess
import sys
from pathlib import Path

import pytest
from combinations import UNSUPPORTED

from template_testing.commands import TEMPLATE

pytestmark = pytest.mark.quick  # one cookiecutter run each, no linters


@pytest.mark.parametrize(("answers", "message"), UNSUPPORTED, ids=[str(a) for a, _ in UNSUPPORTED])
def test_refused_with_nothing_left_behind(tmp_path: Path, answers, message):
    args = [f"{key}={value}" for key, value in answers.items()]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cookiecutter",
            "--no-input",
            "-o",
            str(tmp_path),
            str(TEMPLATE),
            *args,
        ],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert message in output, output
    if "but the choices are" not in output:  # else cookiecutter's own check of choice values
        # Our hook's one message, not a crash of the hook itself, and no traceback of
        # cookiecutter's (local_extensions.NoHookTraceback).
        assert output.count("ERROR: ") == 2 and "Nothing was generated." in output, output
        assert "Traceback" not in output, output
        assert "pre_gen_project.py" not in output and "torch_compat" not in output, output
    assert list(tmp_path.iterdir()) == []
