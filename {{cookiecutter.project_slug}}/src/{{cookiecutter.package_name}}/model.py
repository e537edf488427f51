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


def save_checkpoint(model: Classifier, path: str | os.PathLike[str], **metadata: float) -> Path:
    """Write weights and config atomically: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"config": asdict(model.config), "state_dict": state, "metadata": metadata}, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[Classifier, dict[str, float]]:
    """Load a checkpoint written by save_checkpoint; weights_only refuses pickled code."""
    checkpoint = torch.load(path, map_location=device, weights_only=True)
    model = Classifier(ModelConfig(**checkpoint["config"]))
    model.load_state_dict(checkpoint["state_dict"])
    model.to(device).eval()
    return model, checkpoint.get("metadata", {})
