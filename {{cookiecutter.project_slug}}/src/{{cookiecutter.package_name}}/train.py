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
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset, random_split

from . import distributed
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
    bf16: bool = True  # bf16 autocast where the CUDA device supports it
    clip_grad_norm: float = 1.0  # 0 turns clipping off


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    steps: int
    train_loss: float
    val_accuracy: float
    world_size: int = 1


def pick_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    """The device to train on (under torchrun, this process's CUDA device); raises TrainingError for
    one this machine does not have."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        requested = f"cuda:{local_rank}"
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
def correct_and_total(model: nn.Module, loader: DataLoader, device: torch.device) -> list[float]:
    model.eval()
    correct = total = 0
    for features, labels in loader:
        predicted = model(features.to(device)).argmax(dim=-1)
        correct += (predicted == labels.to(device)).sum().item()
        total += labels.numel()
    model.train()
    return [correct, total]


def train(
    output: Path = DEFAULT_OUTPUT, config: TrainConfig | None = None, *, resume: bool = False
) -> TrainResult:
    """Train, writing a checkpoint after every epoch; with `resume`, continue from the
    checkpoint at `output`. A run that trains no step never replaces a checkpoint.

    Under torchrun every process trains a DistributedDataParallel replica on its share of the
    data; validation is reduced over all of them; only rank 0 logs and writes checkpoints."""
    config = config or TrainConfig()
    if config.samples < MIN_SAMPLES:
        raise TrainingError(f"--samples {config.samples}: need at least {MIN_SAMPLES}")
    wants_cuda = config.device.startswith("cuda") or (
        config.device == "auto" and torch.cuda.is_available()
    )
    group = distributed.join(use_cuda=wants_cuda and torch.cuda.is_available())
    try:
        return _train(output, config, resume, group)
    finally:
        distributed.leave(group)


def _train(
    output: Path, config: TrainConfig, resume: bool, group: distributed.Group
) -> TrainResult:
    info = log.info if group.is_main else (lambda *args: None)
    torch.manual_seed(config.seed)
    dev = pick_device(config.device, group.local_rank)
    dataset = make_blobs(n_samples=config.samples, seed=config.seed)
    n_val = max(1, len(dataset) // 5)
    train_set, val_set = random_split(
        dataset,
        [len(dataset) - n_val, n_val],
        generator=torch.Generator().manual_seed(config.seed),
    )
    sampler = None
    if group.distributed:  # each rank a different, equally long share of every epoch
        sampler = DistributedSampler(
            train_set, num_replicas=group.world_size, rank=group.rank, seed=config.seed
        )
        val_set = Subset(val_set, range(group.rank, len(val_set), group.world_size))
    loader_args = {"num_workers": config.num_workers, "pin_memory": dev.type == "cuda"}
    train_loader = DataLoader(
        train_set, config.batch_size, shuffle=sampler is None, sampler=sampler, **loader_args
    )
    val_loader = DataLoader(val_set, batch_size=512, **loader_args)

    net = Classifier(ModelConfig()).to(dev)
    step, first_epoch = 0, 1
    state = None
    if resume:  # every rank reads the checkpoint rank 0 wrote
        state = read_checkpoint(output, dev)
        if not state["training_state"]:
            raise TrainingError(f"--resume: {output} holds no training state to resume from")
        net.load_state_dict(state["state_dict"])
        step = state["training_state"]["step"]
        first_epoch = state["training_state"]["epoch"] + 1
    model = net
    if group.distributed:
        model = DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    if state:
        optimizer.load_state_dict(state["training_state"]["optimizer"])
        info("resuming from %s at epoch %d, step %d", output, first_epoch, step)
    bf16 = config.bf16 and dev.type == "cuda" and torch.cuda.is_bf16_supported()
    loss_fn = nn.CrossEntropyLoss()
    per_process = sampler.num_samples if sampler is not None else len(train_set)
    info(
        "training on %s, world size %d: %d samples (%d per process), %d epochs%s",
        dev, group.world_size, len(train_set), per_process, config.epochs, ", bf16" if bf16 else "",
    )  # fmt: skip

    def validate() -> float:
        correct, total = group.sum(correct_and_total(model, val_loader, dev), dev)
        return correct / max(total, 1)

    def checkpoint(epoch: int, val_acc: float) -> None:
        if group.is_main:
            save_checkpoint(
                net,
                output,
                train_args=asdict(config),
                training_state={"optimizer": optimizer.state_dict(), "step": step, "epoch": epoch},
                val_accuracy=val_acc,
                steps=step,
                world_size=group.world_size,
            )
        group.barrier()  # no rank runs ahead of a checkpoint it may resume from

    start_step, loss_value, started = step, math.nan, time.perf_counter()
    val_acc = math.nan
    for epoch in range(first_epoch, config.epochs + 1):
        if sampler is not None:
            sampler.set_epoch(epoch)  # a different shuffle each epoch, the same on every rank
        for features, labels in train_loader:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                loss = loss_fn(model(features.to(dev)), labels.to(dev))
            loss.backward()
            if config.clip_grad_norm:
                nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad_norm)
            optimizer.step()
            step, loss_value = step + 1, loss.item()
            if config.max_steps is not None and step >= config.max_steps:
                break
        val_acc = validate()
        info(
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
    steps = group.gather(step - start_step, dev)
    info("wrote %s (val_acc %.3f); steps per process: %s", output, val_acc, steps)
    return TrainResult(output, step, loss_value, val_acc, group.world_size)


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


def non_negative_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text} is not a number >= 0")
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
    parser.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=defaults.bf16,
        help="bf16 autocast on CUDA devices that support it",
    )
    parser.add_argument(
        "--clip-grad-norm", type=non_negative_float, default=defaults.clip_grad_norm,
        help="clip the gradient norm to this (0: no clipping)",
    )  # fmt: skip


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
        bf16=args.bf16,
        clip_grad_norm=args.clip_grad_norm,
    )
    train(args.output, config, resume=args.resume)
    return 0
