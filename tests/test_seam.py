"""The model seam holds: a baked project whose model.py is replaced by another model (a conv net
over images: another input name, rank and width, other outputs, another model name) passes its
own test suite unchanged, both layers: service, Open Inference Protocol, contract, training and
processes."""

import re
import shutil
from pathlib import Path

from template_testing.commands import sh
from template_testing.project_venv import project_python

SECOND_MODEL = Path(__file__).parent / "seams" / "image_model.py"


def test_another_model_in_the_seam_passes_the_project_tests(bake):
    project = bake(package_name="images")
    model = project / "src" / "images" / "model.py"
    shutil.copyfile(SECOND_MODEL, model)
    out = sh(
        str(project_python()), "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "-m", "slow or not slow",  # both layers: this model's only run of the slow one
        cwd=project, env={"PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    passed = int(re.search(r"(\d+) passed", out).group(1))
    assert passed >= 100 and "deselected" not in out, out[-2000:]  # the whole suite ran
