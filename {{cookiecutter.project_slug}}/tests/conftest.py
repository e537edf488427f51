from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.train import train


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained once for the whole test session (about a second on a CPU)."""
    return train(tmp_path_factory.mktemp("model") / "model.pt", epochs=3, device="cpu").checkpoint
