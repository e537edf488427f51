"""A second model for the seam test (tests/test_seam.py): it replaces a baked project's model.py
and nothing else. A small conv net over 1x8x8 images into 10 classes, with another input name,
rank and width, other outputs and a model name of its own, trained on synthetic images."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional
from torch.utils.data import TensorDataset

from .seam import ModelSeam, Tensors, TensorSpec

SIZE = 8
N_CLASSES = 10


@dataclass(frozen=True)
class ModelConfig:
    channels: int = 1
    size: int = SIZE
    n_classes: int = N_CLASSES
    filters: int = 8


class ConvNet(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.conv = nn.Conv2d(config.channels, config.filters, 3, padding=1)
        self.head = nn.Linear(config.filters * config.size * config.size, config.n_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(functional.relu(self.conv(images)).flatten(1))


def synthetic_images(samples: int, seed: int) -> TensorDataset:
    """Each class a fixed random pattern; each image its class's pattern plus noise."""
    patterns = torch.randn(N_CLASSES, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    generator = torch.Generator().manual_seed(seed + 1)
    labels = torch.randint(0, N_CLASSES, (samples,), generator=generator)
    noise = 0.5 * torch.randn(samples, 1, SIZE, SIZE, generator=generator)
    return TensorDataset(patterns[labels] + noise, labels)


class Model(ModelSeam):
    name = "digits-conv"
    version = "3"
    inputs = (TensorSpec("image", "FP32", (-1, 1, SIZE, SIZE), low=-1e3, high=1e3),)
    outputs = (
        TensorSpec("digit", "INT64", (-1,)),
        TensorSpec("confidence", "FP32", (-1,)),
        TensorSpec("logits", "FP32", (-1, N_CLASSES)),
    )
    config_type = ModelConfig
    score_name = "accuracy"
    trained_score = 0.8

    def build(self, config: ModelConfig) -> nn.Module:
        return ConvNet(config)

    def predict(self, module: nn.Module, inputs: Mapping[str, torch.Tensor]) -> Tensors:
        logits = self.forward(module, inputs).float()
        confidence, digit = torch.softmax(logits, dim=-1).max(dim=-1)
        return {"digit": digit, "confidence": confidence, "logits": logits}

    def dataset(self, samples: int, seed: int) -> torch.utils.data.Dataset:
        return synthetic_images(samples, seed)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return functional.cross_entropy(outputs, targets)

    def score(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (outputs.argmax(dim=-1) == targets).float()


MODEL = Model()
