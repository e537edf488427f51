"""Training entry point: `python -m {{ cookiecutter.package_name }} train --help`."""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, random_split

from .data import make_blobs
from .model import Classifier, ModelConfig, read_checkpoint, save_checkpoint

log = logging.getLogger(__name__)

DEFAULT_OUTPUT = Path(os.environ.get("MODEL_PATH", "artifacts/model.pt"))
MIN_SAMPLES = 10  # a fifth is held out for validation; the rest must make at least one batch


class TrainingError(Exception):
    """Training that cannot start or produced nothing; the message says why."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 64
    lr: float = 1e-2
    samples: int = 2048
    num_workers: int = 0
    device: str = "auto"
    seed: int = 0


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    steps: int
    train_loss: float
    val_accuracy: float


def pick_device(requested: str = "auto") -> torch.device:
    """The device to train on; raises TrainingError for one this machine does not have."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise TrainingError(f"--device {requested!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise TrainingError(
                f"--device {requested}: no CUDA device is available (torch {torch.__version__}, "
                f"{build}); use --device cpu or auto"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise TrainingError(
                f"--device {requested}: this machine has {torch.cuda.device_count()} CUDA devices"
            )
    elif device.type != "cpu":
        raise TrainingError(f"--device {requested!r}: use auto, cpu, cuda or cuda:N")
    return device


@torch.inference_mode()
def accuracy(model: nn.Module, loader: DataLoader, device: torch.device) -> float:
    model.eval()
    correct = total = 0
    for features, labels in loader:
        predicted = model(features.to(device)).argmax(dim=-1)
        correct += (predicted == labels.to(device)).sum().item()
        total += labels.numel()
    model.train()
    return correct / max(total, 1)


def train(
    output: Path = DEFAULT_OUTPUT, config: TrainConfig | None = None, *, resume: bool = False
) -> TrainResult:
    """Train, writing a checkpoint after every epoch; with `resume`, continue from the
    checkpoint at `output`. A run that trains no step never replaces a checkpoint."""
    config = config or TrainConfig()
    if config.samples < MIN_SAMPLES:
        raise TrainingError(f"--samples {config.samples}: need at least {MIN_SAMPLES}")
    torch.manual_seed(config.seed)
    dev = pick_device(config.device)
    dataset = make_blobs(n_samples=config.samples, seed=config.seed)
    n_val = max(1, len(dataset) // 5)
    train_set, val_set = random_split(
        dataset,
        [len(dataset) - n_val, n_val],
        generator=torch.Generator().manual_seed(config.seed),
    )
    loader_args = {"num_workers": config.num_workers, "pin_memory": dev.type == "cuda"}
    train_loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True, **loader_args)
    val_loader = DataLoader(val_set, batch_size=512, **loader_args)

    model = Classifier(ModelConfig()).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    step, first_epoch = 0, 1
    if resume:
        state = read_checkpoint(output, dev)
        model.load_state_dict(state["state_dict"])
        if not state["training_state"]:
            raise TrainingError(f"--resume: {output} holds no training state to resume from")
        optimizer.load_state_dict(state["training_state"]["optimizer"])
        step = state["training_state"]["step"]
        first_epoch = state["training_state"]["epoch"] + 1
        log.info("resuming from %s at epoch %d, step %d", output, first_epoch, step)
    loss_fn = nn.CrossEntropyLoss()
    log.info("training on %s: %d samples, %d epochs", dev, len(train_set), config.epochs)

    def checkpoint(epoch: int, val_acc: float) -> Path:
        return save_checkpoint(
            model,
            output,
            train_args=asdict(config),
            training_state={"optimizer": optimizer.state_dict(), "step": step, "epoch": epoch},
            val_accuracy=val_acc,
            steps=step,
        )

    start_step, loss_value, started = step, math.nan, time.perf_counter()
    val_acc = math.nan
    for epoch in range(first_epoch, config.epochs + 1):
        for features, labels in train_loader:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(features.to(dev)), labels.to(dev))
            loss.backward()
            optimizer.step()
            step, loss_value = step + 1, loss.item()
            if config.max_steps is not None and step >= config.max_steps:
                break
        val_acc = accuracy(model, val_loader, dev)
        log.info(
            "epoch %d/%d  step %d  loss %.4f  val_acc %.3f  (%.1fs)",
            epoch, config.epochs, step, loss_value, val_acc, time.perf_counter() - started,
        )  # fmt: skip
        checkpoint(epoch, val_acc)  # periodic: a stopped run resumes from the last epoch
        if config.max_steps is not None and step >= config.max_steps:
            break
    if step == start_step:
        resumed = f", resumed at epoch {first_epoch}" if resume else ""
        raise TrainingError(
            f"no training step was run (epochs {config.epochs}{resumed}); "
            f"{output} was left as it was"
        )
    log.info("wrote %s (val_acc %.3f)", output, val_acc)
    return TrainResult(checkpoint=output, steps=step, train_loss=loss_value, val_accuracy=val_acc)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive whole number")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def samples(text: str) -> int:
    value = int(text)
    if value < MIN_SAMPLES:
        raise argparse.ArgumentTypeError(f"{value}: need at least {MIN_SAMPLES}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="checkpoint path")
    parser.add_argument("--epochs", type=positive_int, default=defaults.epochs)
    parser.add_argument("--max-steps", type=positive_int, help="stop after this many steps")
    parser.add_argument("--batch-size", type=positive_int, default=defaults.batch_size)
    parser.add_argument("--lr", type=positive_float, default=defaults.lr)
    parser.add_argument("--samples", type=samples, default=defaults.samples)
    parser.add_argument(
        "--num-workers", type=non_negative_int, default=0, help="DataLoader worker processes"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--resume", action="store_true", help="continue from the checkpoint at --output"
    )


def run(args: argparse.Namespace) -> int:
    config = TrainConfig(
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        samples=args.samples,
        num_workers=args.num_workers,
        device=args.device,
        seed=args.seed,
    )
    train(args.output, config, resume=args.resume)
    return 0
