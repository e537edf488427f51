import pytest
import torch

from {{ cookiecutter.package_name }}.__main__ import main
from {{ cookiecutter.package_name }}.model import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
)
from {{ cookiecutter.package_name }}.train import TrainConfig, TrainingError, train


def test_a_few_steps_write_a_loadable_checkpoint(tmp_path):
    result = train(tmp_path / "model.pt", TrainConfig(max_steps=3, device="cpu"))
    assert result.steps == 3
    model, metadata = load_checkpoint(result.checkpoint)
    assert metadata["steps"] == 3
    assert model(torch.zeros(1, model.config.n_features)).isfinite().all()
    saved = read_checkpoint(result.checkpoint)
    assert saved["format"] == CHECKPOINT_FORMAT
    assert saved["torch"] == str(torch.__version__)
    assert saved["train_args"]["max_steps"] == 3


def test_training_learns_the_blobs(checkpoint):
    _, metadata = load_checkpoint(checkpoint)
    assert metadata["val_accuracy"] > 0.9


def test_command_line_trains(tmp_path):
    output = tmp_path / "cli.pt"
    assert main(["train", "--max-steps", "2", "--output", str(output), "--device", "cpu"]) == 0
    assert output.exists()


def test_resume_continues_where_the_last_run_stopped(tmp_path):
    output = tmp_path / "model.pt"
    first = train(output, TrainConfig(epochs=2, samples=200, batch_size=32, device="cpu"))
    resumed = train(
        output, TrainConfig(epochs=4, samples=200, batch_size=32, device="cpu"), resume=True
    )
    assert resumed.steps == 2 * first.steps
    assert read_checkpoint(output)["training_state"]["epoch"] == 4


def test_a_run_without_steps_leaves_the_checkpoint_alone(tmp_path):
    output = tmp_path / "model.pt"
    train(output, TrainConfig(epochs=2, samples=100, device="cpu"))
    before = output.read_bytes()
    with pytest.raises(TrainingError, match="no training step"):
        train(output, TrainConfig(epochs=2, samples=100, device="cpu"), resume=True)
    assert output.read_bytes() == before


def test_a_checkpoint_of_another_format_is_refused(tmp_path):
    output = tmp_path / "model.pt"
    train(output, TrainConfig(max_steps=1, device="cpu"))
    state = read_checkpoint(output)
    torch.save({**state, "format": CHECKPOINT_FORMAT + 1}, output)
    with pytest.raises(CheckpointError, match="format"):
        load_checkpoint(output)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "0"], "--epochs"),
        (["--max-steps", "0"], "--max-steps"),
        (["--batch-size", "0"], "--batch-size"),
        (["--lr", "-1"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--samples", "1"], "--samples"),
        (["--num-workers", "-1"], "--num-workers"),
    ],
)
def test_bad_arguments_are_refused_by_the_parser(args, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", *args])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--device", "cuda", "--output", str(tmp_path / "m.pt")]) == 1
    err = capsys.readouterr().err
    assert "no CUDA device is available" in err and "Traceback" not in err
    assert not (tmp_path / "m.pt").exists()
