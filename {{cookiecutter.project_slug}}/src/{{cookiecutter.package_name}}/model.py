"""The model: a small MLP classifier, with checkpoints that carry their own configuration."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    n_features: int = 4
    n_classes: int = 3
    hidden: int = 64
    dropout: float = 0.1


class Classifier(nn.Module):
    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        c = self.config
        self.net = nn.Sequential(
            nn.Linear(c.n_features, c.hidden),
            nn.ReLU(),
            nn.Dropout(c.dropout),
            nn.Linear(c.hidden, c.hidden),
            nn.ReLU(),
            nn.Linear(c.hidden, c.n_classes),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, n_classes)."""
        return self.net(features)

    @torch.inference_mode()
    def predict_proba(self, features: torch.Tensor) -> torch.Tensor:
        was_training = self.training
        self.eval()
        try:
            return torch.softmax(self(features), dim=-1)
        finally:
            self.train(was_training)


CHECKPOINT_FORMAT = 1  # bump when the layout below changes; loading checks it


class CheckpointError(Exception):
    """A checkpoint that is missing, unreadable or of another format; the message says which."""


def save_checkpoint(
    model: Classifier,
    path: str | os.PathLike[str],
    *,
    train_args: dict | None = None,
    training_state: dict | None = None,
    **metadata: float,
) -> Path:
    """Write weights, config, format version, torch version, training arguments and (to resume)
    the optimizer state atomically: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "torch": str(torch.__version__),  # a plain str: weights_only loads it
        "config": asdict(model.config),
        "state_dict": state,
        "metadata": metadata,
        "train_args": train_args or {},
        "training_state": training_state,
    }
    torch.save(checkpoint, tmp)
    tmp.replace(path)
    return path


def read_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> dict:
    """The checkpoint's contents; weights_only refuses pickled code. Raises CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path}: train one first ("
            f"`{{ cookiecutter.project_slug }} train --output {path}`, or `docker compose up`)"
        )
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise CheckpointError(f"cannot read checkpoint {path}: {reason}") from None
    found = checkpoint.get("format") if isinstance(checkpoint, dict) else None
    if found != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is checkpoint format {found}, this code reads format {CHECKPOINT_FORMAT}: "
            "train again"
        )
    return checkpoint


def load_checkpoint(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[Classifier, dict[str, float]]:
    """The model of a checkpoint written by save_checkpoint, in eval mode, and its metadata."""
    checkpoint = read_checkpoint(path, device)
    model = Classifier(ModelConfig(**checkpoint["config"]))
    model.load_state_dict(checkpoint["state_dict"])
    model.to(device).eval()
    return model, checkpoint["metadata"]
