"""Training entry point: `python -m {{ cookiecutter.package_name }} train --help`."""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, random_split

from .data import make_blobs
from .model import Classifier, ModelConfig, save_checkpoint

log = logging.getLogger(__name__)

DEFAULT_OUTPUT = Path(os.environ.get("MODEL_PATH", "artifacts/model.pt"))


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    steps: int
    train_loss: float
    val_accuracy: float


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


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
    output: Path = DEFAULT_OUTPUT,
    *,
    epochs: int = 10,
    max_steps: int | None = None,
    batch_size: int = 64,
    lr: float = 1e-2,
    samples: int = 2048,
    num_workers: int = 0,
    device: str = "auto",
    seed: int = 0,
) -> TrainResult:
    torch.manual_seed(seed)
    dev = pick_device(device)
    dataset = make_blobs(n_samples=samples, seed=seed)
    n_val = max(1, len(dataset) // 5)
    train_set, val_set = random_split(
        dataset, [len(dataset) - n_val, n_val], generator=torch.Generator().manual_seed(seed)
    )
    loader_args = {"num_workers": num_workers, "pin_memory": dev.type == "cuda"}
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, **loader_args)
    val_loader = DataLoader(val_set, batch_size=512, **loader_args)

    model = Classifier(ModelConfig()).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    log.info("training on %s: %d samples, %d epochs", dev, len(train_set), epochs)

    step, loss_value, started = 0, math.nan, time.perf_counter()
    for epoch in range(1, epochs + 1):
        for features, labels in train_loader:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(features.to(dev)), labels.to(dev))
            loss.backward()
            optimizer.step()
            step, loss_value = step + 1, loss.item()
            if max_steps is not None and step >= max_steps:
                break
        val_acc = accuracy(model, val_loader, dev)
        elapsed = time.perf_counter() - started
        log.info(
            "epoch %d/%d  step %d  loss %.4f  val_acc %.3f  (%.1fs)",
            epoch,
            epochs,
            step,
            loss_value,
            val_acc,
            elapsed,
        )
        if max_steps is not None and step >= max_steps:
            break

    val_acc = accuracy(model, val_loader, dev)
    path = save_checkpoint(model, output, val_accuracy=val_acc, steps=step)
    log.info("wrote %s (val_acc %.3f)", path, val_acc)
    return TrainResult(checkpoint=path, steps=step, train_loss=loss_value, val_accuracy=val_acc)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="checkpoint path")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    result = train(
        args.output,
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        samples=args.samples,
        num_workers=args.num_workers,
        device=args.device,
        seed=args.seed,
    )
    return 0 if result.steps > 0 else 1
