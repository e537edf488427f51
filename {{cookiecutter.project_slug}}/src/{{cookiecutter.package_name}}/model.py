"""The model: a small MLP classifier, with checkpoints that carry their own configuration."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn

# The model's shapes: a row of N_FEATURES numbers in, N_CLASSES probabilities out. The service's
# request schema and the training data follow from these.
N_FEATURES = 4
N_CLASSES = 3


@dataclass(frozen=True)
class ModelConfig:
    n_features: int = N_FEATURES
    n_classes: int = N_CLASSES
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
    the optimizer state atomically: a reader never sees half a file, and a failed write (a full
    disk, say) leaves the previous checkpoint as it was and no temporary file behind."""
    path = Path(path)
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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(checkpoint, tmp)
        tmp.replace(path)
    except (OSError, RuntimeError) as error:  # torch.save reports some write errors as RuntimeError
        tmp.unlink(missing_ok=True)
        raise CheckpointError(
            f"cannot write checkpoint {path}: {first_line(error)}"
            + ("; the previous one was left as it was" if path.exists() else "")
        ) from None
    return path


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


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
        # Never pass on torch's advice to load with weights_only=False: that runs the file's code.
        reason = first_line(error)
        if "weights_only" in reason or "Weights only" in reason:
            reason = "not a checkpoint of tensors and plain data (refused: it could run code)"
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
    """The model of a checkpoint written by save_checkpoint, in eval mode, and its metadata.
    Raises CheckpointError, in one line, for anything that would not serve correct answers."""
    checkpoint = read_checkpoint(path, device)
    config, state = checkpoint.get("config"), checkpoint.get("state_dict")
    if not isinstance(config, dict) or not isinstance(state, dict):
        raise CheckpointError(f"{path} has no model config or weights: train again")
    known = {f.name for f in fields(ModelConfig)}
    if unknown := sorted(set(config) - known):
        raise CheckpointError(
            f"{path} has model settings this code does not know: {', '.join(map(str, unknown))}"
        )
    try:
        model = Classifier(ModelConfig(**config))
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{path}: its weights do not fit its model config ({first_line(error)})"
        ) from None
    if bad := [n for n, t in state.items() if t.is_floating_point() and not t.isfinite().all()]:
        raise CheckpointError(
            f"{path} holds non-finite weights ({', '.join(bad[:3])}): the training that wrote it "
            "diverged; train again"
        )
    model.to(device).eval()
    return model, checkpoint.get("metadata") or {}
