import errno
import logging
import math
import subprocess
from pathlib import Path

import pytest
import torch

from {{ cookiecutter.package_name }}.__main__ import main
from {{ cookiecutter.package_name }}.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    load_checkpoint,
    load_for_serving,
    read_checkpoint,
    resume_path,
    save_checkpoint,
)
from {{ cookiecutter.package_name }}.distributed import Group
from {{ cookiecutter.package_name }}.model import MODEL
from {{ cookiecutter.package_name }}.train import EpochLoss, TrainConfig, TrainingError, train

from serving import affordable, command, command_env, weights_made_elsewhere


def test_a_few_steps_write_a_loadable_checkpoint(tmp_path):
    result = train(
        tmp_path / "model.pt", TrainConfig(max_steps=3, samples=affordable(200), device="cpu")
    )
    assert result.steps == 3
    module, _, metadata = load_checkpoint(result.checkpoint)
    assert metadata["steps"] == 3
    outputs = MODEL.predict(module, MODEL.example_inputs(2))
    assert MODEL.check_outputs(outputs, 2) is None
    for name, output in outputs.items():  # BYTES outputs are lists
        assert isinstance(output, list) or output.isfinite().all(), name
    saved = read_checkpoint(result.checkpoint)
    assert saved["format"] == CHECKPOINT_FORMAT
    assert saved["torch"] == str(torch.__version__)
    assert saved["train_args"]["max_steps"] == 3
    # Serving reads the weights only; the optimizer's state, for --resume, is kept beside them.
    assert saved["training_state"] is None
    resumable = read_checkpoint(resume_path(result.checkpoint))
    assert resumable["training_state"]["step"] == 3 and resumable["training_state"]["optimizer"]
    assert result.checkpoint.stat().st_size < resume_path(result.checkpoint).stat().st_size


def test_training_learns_the_example_data(checkpoint):
    _, _, metadata = load_checkpoint(checkpoint)
    assert metadata["val_score"] >= MODEL.trained_score


def test_command_line_trains(tmp_path):
    output = tmp_path / "cli.pt"
    assert (
        main(
            [
                "train",
                "--max-steps",
                "2",
                "--samples",
                str(affordable(200)),
                "--output",
                str(output),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert output.exists()


def test_resume_continues_where_the_last_run_stopped(tmp_path):
    output = tmp_path / "model.pt"
    first = train(
        output, TrainConfig(epochs=2, samples=affordable(200), batch_size=32, device="cpu")
    )
    resumed = train(
        output,
        TrainConfig(epochs=4, samples=affordable(200), batch_size=32, device="cpu"),
        resume=True,
    )
    assert resumed.steps == 2 * first.steps
    assert read_checkpoint(resume_path(output))["training_state"]["epoch"] == 4


@pytest.mark.parametrize("kind", ["pt", "safetensors"])
def test_training_can_start_from_weights_made_elsewhere(tmp_path, kind):
    weights, made = weights_made_elsewhere(tmp_path, kind)
    config = TrainConfig(max_steps=1, samples=affordable(100), lr=1e-9, device="cpu")
    tuned, _, _ = load_checkpoint(train(tmp_path / "tuned.pt", config, init=weights).checkpoint)
    # One step at a tiny learning rate: the same weights (buffers, such as BatchNorm's running
    # statistics, move with any step).
    tuned_weights = dict(tuned.named_parameters())
    for name, value in made.named_parameters():
        torch.testing.assert_close(tuned_weights[name], value, rtol=0, atol=1e-6)


def test_init_and_resume_together_are_refused(tmp_path):
    with pytest.raises(TrainingError, match="--init and --resume"):
        train(tmp_path / "m.pt", TrainConfig(device="cpu"), resume=True, init=tmp_path / "w.pt")


def test_resume_without_its_state_is_one_line(tmp_path):
    output = tmp_path / "model.pt"
    with pytest.raises(TrainingError, match=r"--resume: no .*model\.resume\.pt to resume from"):
        train(output, TrainConfig(epochs=1, samples=affordable(100), device="cpu"), resume=True)


def test_a_run_without_steps_leaves_the_checkpoint_alone(tmp_path):
    output = tmp_path / "model.pt"
    train(output, TrainConfig(epochs=2, samples=affordable(100), device="cpu"))
    before = output.read_bytes()
    with pytest.raises(TrainingError, match="no training step"):
        train(output, TrainConfig(epochs=2, samples=affordable(100), device="cpu"), resume=True)
    assert output.read_bytes() == before


def test_a_checkpoint_of_another_format_is_refused(tmp_path):
    output = tmp_path / "model.pt"
    train(output, TrainConfig(max_steps=1, samples=affordable(200), device="cpu"))
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


def corrupt(path, **changes) -> None:
    """Rewrite the checkpoint at `path` with these top-level changes (None: remove the key)."""
    state = read_checkpoint(path)
    for key, value in changes.items():
        if value is None:
            state.pop(key)
        else:
            state[key] = value(state[key]) if callable(value) else value
    torch.save(state, path)


def nan_weights(state_dict):
    return {
        k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
        for k, v in state_dict.items()
    }


BAD_CHECKPOINTS = {
    "garbage": ("cannot read checkpoint", None),
    "no-config": ("has no model config or weights", {"config": None}),
    "unknown-setting": ("does not know: colour", {"config": lambda c: {**c, "colour": "red"}}),
    "weights-do-not-fit": ("weights do not fit", {"config": lambda c: widened(c, "")}),
    "non-finite": ("non-finite weights", {"state_dict": nan_weights}),
}


@pytest.mark.parametrize(("message", "change"), BAD_CHECKPOINTS.values(), ids=BAD_CHECKPOINTS)
def test_every_unservable_checkpoint_is_refused_in_one_line(tmp_path, message, change):
    path = tmp_path / "model.pt"
    if change is None:
        pickled_code = b"\x80\x02c__builtin__\neval\nq\x00X\x0b\x00\x00\x00print('hi')q\x01\x85R."
        path.write_bytes(pickled_code)
    else:
        train(path, TrainConfig(max_steps=1, samples=affordable(100), device="cpu"))
        corrupt(path, **change)
    with pytest.raises(CheckpointError, match=message) as refused:
        load_for_serving(path)
    text = str(refused.value)
    assert "\n" not in text and "weights_only=False" not in text


def widened(config: dict, name: str) -> dict:
    """The config with the whole-number setting `name` (every one, for "") 3 larger."""
    return {k: v + 3 if type(v) is int and name in ("", k) else v for k, v in config.items()}


def test_a_checkpoint_for_other_inputs_is_refused_in_one_line(tmp_path):
    """A model trained for another input (another width, say): refused before serving."""
    refused = []
    defaults = vars(MODEL.config_type())
    for name in [k for k, v in defaults.items() if type(v) is int]:
        config = MODEL.config_type(**widened(defaults, name))
        path = save_checkpoint(MODEL.build(config), config, tmp_path / f"{name}.pt")
        try:
            load_for_serving(path)
        except CheckpointError as error:
            assert "does not fit the inputs and outputs declared" in str(error)
            assert "\n" not in str(error)
            refused.append(name)
    assert refused, "some setting of ModelConfig changes what the model takes"


@pytest.mark.slow
def test_serve_names_a_garbage_checkpoint_in_one_line(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"not a checkpoint at all")
    done = subprocess.run(command("serve", "--model", str(path)), env=command_env(),
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert f"cannot read checkpoint {path}" in done.stderr and "weights_only" not in done.stderr


def test_a_diverged_run_stops_and_never_replaces_a_good_checkpoint(tmp_path, capsys):
    output = tmp_path / "model.pt"
    samples = affordable(200)
    train(output, TrainConfig(epochs=1, samples=samples, device="cpu"))
    good = output.read_bytes()
    # Weights near float32's largest after one step (AdamW's first is about lr), so the next
    # step's loss overflows, normalization layers or not: 4 steps in the first epoch.
    batch = max(1, (samples - samples // 5) // 4)
    args = ["train", "--output", str(output), "--lr", "1e37", "--clip-grad-norm", "0",
            "--epochs", "2", "--samples", str(samples), "--batch-size", str(batch),
            "--device", "cpu"]  # fmt: skip
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "training diverged" in err and "Traceback" not in err
    assert output.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model.resume.pt"]


@pytest.mark.parametrize("where", ["parent-is-a-file", "read-only"])
def test_an_unwritable_output_fails_before_the_first_step(tmp_path, where, capsys):
    if where == "parent-is-a-file":
        (tmp_path / "file").write_text("")
        output = tmp_path / "file" / "model.pt"
    else:  # sysfs takes no new files, even from root
        output = Path("/sys/model.pt")
    assert main(["train", "--output", str(output), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    # The one line is all: refused before training began (it logs from its first step on).
    assert f"cannot write to {output.parent}" in err and len(err.strip().splitlines()) == 1


def test_a_failed_write_keeps_the_old_checkpoint_and_leaves_no_temporary_file(
    tmp_path, monkeypatch, capsys
):
    output = tmp_path / "model.pt"
    train(output, TrainConfig(max_steps=1, samples=affordable(100), device="cpu"))
    before = output.read_bytes()

    def disk_full(obj, path):
        Path(path).write_bytes(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    args = ["--max-steps", "2", "--samples", str(affordable(100)), "--device", "cpu"]
    assert main(["train", "--output", str(output), *args]) == 1
    err = capsys.readouterr().err
    (error,) = [line for line in err.splitlines() if "error:" in line]  # the rest is progress
    assert error.endswith("No space left on device; the previous one was left as it was")
    assert "Traceback" not in err
    assert output.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model.resume.pt"]


def test_the_epoch_loss_is_the_mean_over_its_steps():
    loss = EpochLoss()
    for value in (3.0, 1.0, 2.0):
        loss.add(value)
    assert loss.mean(Group(), torch.device("cpu")) == 2.0


def test_progress_lines_within_an_epoch(tmp_path, capsys):
    samples = affordable(200)  # a fifth held out; 10 steps over the rest
    batch = max(1, (samples - samples // 5) // 10)
    args = ["train", "--output", str(tmp_path / "m.pt"), "--epochs", "1", "--samples", str(samples),
            "--batch-size", str(batch), "--log-interval", "0", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    steps = math.ceil((samples - samples // 5) / batch)
    assert "step 1/" in err and f"step {steps}/{steps}" in err and steps >= 10
    assert "loss" in err and "(epoch mean)" in err


def test_resume_applies_a_new_learning_rate(tmp_path, caplog):
    output = tmp_path / "model.pt"
    train(output, TrainConfig(epochs=1, samples=affordable(200), lr=1e-2, device="cpu"))
    with caplog.at_level(logging.INFO):
        train(
            output,
            TrainConfig(epochs=2, samples=affordable(200), lr=1e-4, device="cpu"),
            resume=True,
        )
    saved = read_checkpoint(resume_path(output))
    assert saved["train_args"]["lr"] == 1e-4
    assert {g["lr"] for g in saved["training_state"]["optimizer"]["param_groups"]} == {1e-4}
    assert "learning rate 0.0001 (the checkpoint was trained with 0.01)" in caplog.text
