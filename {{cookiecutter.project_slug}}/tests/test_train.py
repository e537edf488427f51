import torch

from {{ cookiecutter.package_name }}.__main__ import main
from {{ cookiecutter.package_name }}.model import load_checkpoint
from {{ cookiecutter.package_name }}.train import train


def test_a_few_steps_write_a_loadable_checkpoint(tmp_path):
    result = train(tmp_path / "model.pt", max_steps=3, device="cpu")
    assert result.steps == 3
    model, metadata = load_checkpoint(result.checkpoint)
    assert metadata["steps"] == 3
    assert model(torch.zeros(1, model.config.n_features)).isfinite().all()


def test_training_learns_the_blobs(checkpoint):
    _, metadata = load_checkpoint(checkpoint)
    assert metadata["val_accuracy"] > 0.9


def test_command_line_trains(tmp_path):
    output = tmp_path / "cli.pt"
    assert main(["train", "--max-steps", "2", "--output", str(output), "--device", "cpu"]) == 0
    assert output.exists()
