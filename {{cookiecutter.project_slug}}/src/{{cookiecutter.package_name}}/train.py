"""Training entry point: `python -m {{ cookiecutter.package_name }} train --help`."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset, random_split

from . import distributed
from .checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    resume_path,
    save_checkpoint,
)
from .model import MODEL
from .seam import to_device

log = logging.getLogger(__name__)

DEFAULT_OUTPUT = Path(os.environ.get("MODEL_PATH", "artifacts/model.pt"))
MIN_SAMPLES = 10  # a fifth is held out for validation; the rest must make at least one batch


class TrainingError(Exception):
    """Training that cannot start, diverged or produced nothing; the message says why."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    max_steps: int | None = None
    batch_size: int | None = None  # None: the model's (model.py's batch_size)
    lr: float | None = None  # None: the model's (model.py's lr)
    samples: int = 2048
    num_workers: int = 0
    device: str = "auto"
    seed: int = 0
    bf16: bool = True  # bf16 autocast where the CUDA device supports it
    clip_grad_norm: float = 1.0  # 0 turns clipping off
    log_interval_s: float = 30.0  # progress lines this often when stderr is not a terminal


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    steps: int
    train_loss: float
    val_score: float  # the mean of MODEL.score over the validation set (accuracy, for the example)
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


def run_model(model: nn.Module, inputs, device: torch.device):
    """The module's answer to a batch of the dataset's inputs, through the seam's forward (the
    pre-processing serving uses too)."""
    named = MODEL.named_inputs(inputs)
    return MODEL.forward(model, to_device(named, device))


@torch.inference_mode()
def score_and_count(model: nn.Module, loader: DataLoader, device: torch.device) -> list[float]:
    """The sum of MODEL.score over the loader's examples, and their number."""
    model.eval()
    total = count = 0.0
    for inputs, targets in loader:
        scores = MODEL.score(run_model(model, inputs, device), targets.to(device))
        total += scores.sum().item()
        count += scores.numel()
    model.train()
    return [total, count]


def train(
    output: Path = DEFAULT_OUTPUT,
    config: TrainConfig | None = None,
    *,
    resume: bool = False,
    init: Path | None = None,
) -> TrainResult:
    """Train, writing a checkpoint after every epoch; with `resume`, continue from the
    checkpoint at `output`; with `init`, start from those weights (a checkpoint, a .safetensors
    file or a state_dict: fine-tuning). A run that trains no step, or whose loss stops being
    finite, never replaces a checkpoint.

    Under torchrun every process trains a DistributedDataParallel replica on its share of the
    data; validation is reduced over all of them; only rank 0 logs and writes checkpoints."""
    config = config or TrainConfig()
    config = replace(
        config, lr=config.lr or MODEL.lr, batch_size=config.batch_size or MODEL.batch_size
    )
    if resume and init is not None:
        raise TrainingError("--init and --resume: use one (--resume has its own weights)")
    if config.samples < MIN_SAMPLES:
        raise TrainingError(f"--samples {config.samples}: need at least {MIN_SAMPLES}")
    wants_cuda = config.device.startswith("cuda") or (
        config.device == "auto" and torch.cuda.is_available()
    )
    group = distributed.join(use_cuda=wants_cuda and torch.cuda.is_available())
    finished = False
    try:
        if group.is_main:
            check_writable(output)
        result = _train(output, config, resume, init, group)
        finished = True
        return result
    finally:
        distributed.leave(group, finished)


def check_writable(output: Path) -> None:
    """Fail before the first step, not after an epoch, when the checkpoint cannot be written."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output.parent):
            pass
    except OSError as error:
        raise TrainingError(
            f"cannot write to {output.parent}: {error.strerror or error}; choose another --output"
        ) from None


class Progress:
    """Progress within an epoch: a bar at a terminal, a line every `interval_s` otherwise."""

    def __init__(self, epoch: int, epochs: int, steps: int, interval_s: float, show: bool) -> None:
        self.epoch, self.epochs, self.steps, self.interval_s = epoch, epochs, steps, interval_s
        self.show, self.done, self.last = show, 0, time.monotonic()
        self.bar = None
        if show and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=steps, desc=f"epoch {epoch}/{epochs}", leave=False, unit="step")

    def step(self, loss: float) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            self.bar.update()
        elif self.show and time.monotonic() - self.last >= self.interval_s:
            self.last = time.monotonic()
            log.info("epoch %d/%d  step %d/%d  loss %.4f", self.epoch, self.epochs, self.done,
                     self.steps, loss)  # fmt: skip

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class EpochLoss:
    """The mean training loss of an epoch, over every step of every process."""

    def __init__(self) -> None:
        self.total, self.steps = 0.0, 0

    def add(self, loss: float) -> None:
        self.total, self.steps = self.total + loss, self.steps + 1

    def mean(self, group: distributed.Group, device: torch.device) -> float:
        total, steps = group.sum([self.total, self.steps], device)
        return total / steps if steps else math.nan


def _train(
    output: Path, config: TrainConfig, resume: bool, init: Path | None, group: distributed.Group
) -> TrainResult:
    info = log.info if group.is_main else (lambda *args: None)
    torch.manual_seed(config.seed)
    dev = pick_device(config.device, group.local_rank)
    train_set, val_set = split(config)
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
    val_loader = DataLoader(val_set, batch_size=config.batch_size, **loader_args)

    if init is not None:  # every rank loads the same weights
        net, model_config, _ = load_checkpoint(init, dev)
        net.train()
        info("starting from the weights in %s", init)
    else:
        model_config = MODEL.config_type()
        net = MODEL.build(model_config).to(dev)
    state = read_resume_state(output, dev) if resume else None  # every rank reads rank 0's
    if state:
        net.load_state_dict(state["state_dict"])
    step = state["training_state"]["step"] if state else 0
    first_epoch = state["training_state"]["epoch"] + 1 if state else 1
    model = net
    if group.distributed:
        model = DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    if state:
        resume_optimizer(optimizer, state, config.lr, info)
        info("resuming from %s at epoch %d, step %d", resume_path(output), first_epoch, step)
    bf16 = config.bf16 and dev.type == "cuda" and torch.cuda.is_bf16_supported()
    per_process = sampler.num_samples if sampler is not None else len(train_set)
    info(
        "training on %s, world size %d: %d samples (%d per process), %d epochs%s",
        dev, group.world_size, len(train_set), per_process, config.epochs, ", bf16" if bf16 else "",
    )  # fmt: skip

    def validate() -> float:
        total, count = group.sum(score_and_count(model, val_loader, dev), dev)
        return total / max(count, 1)

    def checkpoint(epoch: int, val_score: float) -> None:
        failure = None
        if group.is_main:
            try:
                save_checkpoint(
                    net, model_config, output, train_args=asdict(config),
                    training_state={"optimizer": optimizer.state_dict(), "step": step,
                                    "epoch": epoch},
                    val_score=val_score, steps=step, world_size=group.world_size,
                )  # fmt: skip
            except CheckpointError as error:
                failure = str(error)
        # Every rank learns whether rank 0 wrote it; none runs ahead of a checkpoint.
        if group.any(failure is not None, dev):
            raise TrainingError(failure or "rank 0 could not write the checkpoint")

    start_step, started = step, time.perf_counter()
    val_score = train_loss = math.nan
    stop = False
    for epoch in range(first_epoch, config.epochs + 1):
        if sampler is not None:
            sampler.set_epoch(epoch)  # a different shuffle each epoch, the same on every rank
        progress = Progress(epoch, config.epochs, len(train_loader), config.log_interval_s,
                            group.is_main)  # fmt: skip
        epoch_loss = EpochLoss()
        for inputs, targets in train_loader:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                loss = MODEL.loss(run_model(model, inputs, dev), targets.to(dev))
            loss_value = loss.item()
            if group.any(not math.isfinite(loss_value), dev):
                progress.close()
                raise TrainingError(
                    f"training diverged: the loss is not finite at epoch {epoch}, step {step + 1}"
                    f" (--lr {config.lr:g}, --clip-grad-norm {config.clip_grad_norm:g}); "
                    f"{output} was not replaced. Lower --lr"
                )
            loss.backward()
            if config.clip_grad_norm:
                nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad_norm)
            optimizer.step()
            step += 1
            epoch_loss.add(loss_value)
            progress.step(loss_value)
            if config.max_steps is not None and step >= config.max_steps:
                stop = True
                break
        progress.close()
        train_loss, val_score = epoch_loss.mean(group, dev), validate()
        info(
            "epoch %d/%d  step %d  loss %.4f (epoch mean)  val_%s %.3f  (%.1fs)",
            epoch, config.epochs, step, train_loss, MODEL.score_name, val_score,
            time.perf_counter() - started,
        )  # fmt: skip
        checkpoint(epoch, val_score)  # periodic: a stopped run resumes from the last epoch
        if stop:
            break
    if step == start_step:
        resumed = f", resumed at epoch {first_epoch}" if resume else ""
        raise TrainingError(
            f"no training step was run (epochs {config.epochs}{resumed}); "
            f"{output} was left as it was"
        )
    steps = group.gather(step - start_step, dev)
    info("wrote %s (val_%s %.3f); steps per process: %s", output, MODEL.score_name, val_score,
         steps)  # fmt: skip
    return TrainResult(output, step, train_loss, val_score, group.world_size)


def read_resume_state(output: Path, dev: torch.device) -> dict:
    path = resume_path(output)
    if not path.is_file():
        raise TrainingError(
            f"--resume: no {path} to resume from (training writes it beside {output.name} "
            "after every epoch)"
        )
    state = read_checkpoint(path, dev)
    if not state.get("training_state"):
        raise TrainingError(f"--resume: {path} holds no training state to resume from")
    return state


def split(config: TrainConfig) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset]:
    """The training and validation sets: a fifth held out, the same split on every rank."""
    dataset = MODEL.dataset(config.samples, config.seed)
    n_val = max(1, len(dataset) // 5)
    generator = torch.Generator().manual_seed(config.seed)
    return tuple(random_split(dataset, [len(dataset) - n_val, n_val], generator=generator))


def resume_optimizer(optimizer: torch.optim.Optimizer, state: dict, lr: float, info) -> None:
    """The checkpoint's optimizer state, with this run's learning rate."""
    optimizer.load_state_dict(state["training_state"]["optimizer"])
    saved = optimizer.param_groups[0]["lr"]
    for param_group in optimizer.param_groups:
        param_group["lr"] = lr
    if saved != lr:
        info("learning rate %g (the checkpoint was trained with %g)", lr, saved)


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
    d = TrainConfig()
    arg = parser.add_argument
    arg("--output", type=Path, default=DEFAULT_OUTPUT, help="checkpoint path (MODEL_PATH)")
    arg("--epochs", type=positive_int, default=d.epochs, help="passes over the training data")
    arg("--max-steps", type=positive_int, help="stop after this many steps (default: no limit)")
    arg("--batch-size", type=positive_int, default=MODEL.batch_size,
        help="rows per step and process")  # fmt: skip
    arg("--lr", type=positive_float, default=MODEL.lr, help="learning rate (applies on --resume)")
    arg(
        "--samples",
        type=samples,
        default=d.samples,
        help="training examples (model.py), a fifth held out",
    )
    arg("--num-workers", type=non_negative_int, default=d.num_workers, help="DataLoader workers")
    arg("--device", default=d.device, help="auto, cpu, cuda or cuda:N")
    arg("--seed", type=int, default=d.seed, help="seed of the data, the split and the weights")
    arg("--resume", action="store_true", help="continue from the checkpoint at --output")
    arg("--init", type=Path, help="start from these weights: a checkpoint, .safetensors or "
        "state_dict (default: fresh ones)")  # fmt: skip
    arg(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=d.bf16,
        help="bf16 autocast on CUDA devices that support it",
    )
    arg(
        "--clip-grad-norm",
        type=non_negative_float,
        default=d.clip_grad_norm,
        help="clip the gradient norm to this (0: no clipping)",
    )
    arg(
        "--log-interval",
        type=non_negative_float,
        default=d.log_interval_s,
        dest="log_interval_s",
        help="seconds between progress lines when stderr is not a terminal",
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
        bf16=args.bf16,
        clip_grad_norm=args.clip_grad_norm,
        log_interval_s=args.log_interval_s,
    )
    train(args.output, config, resume=args.resume, init=args.init)
    return 0
