"""The model seam: the one file to edit to serve and train another model.

Declare the inputs and outputs (names, datatypes, shapes with the batch first), how a config
becomes a module, how inputs become outputs, and what training needs (data, loss, score). The
service (/predict, the Open Inference Protocol, batching, validation, the OpenAPI schema, the
warm-up), training, checkpoints and the tests follow from `MODEL` below.

The example: a small MLP classifier of rows of N_FEATURES numbers into N_CLASSES classes,
trained on synthetic Gaussian blobs (data.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional

from .data import make_blobs
from .seam import ModelSeam, Tensors, TensorSpec

N_FEATURES = 4
N_CLASSES = 3


@dataclass(frozen=True)
class ModelConfig:
    """The model's settings; every checkpoint carries them."""

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


class Model(ModelSeam):
    name = "{{ cookiecutter.package_name }}"
    version = "1"
    inputs = (TensorSpec("features", "FP32", (-1, N_FEATURES), low=-1e6, high=1e6),)
    outputs = (
        TensorSpec("predictions", "INT64", (-1,)),
        TensorSpec("probabilities", "FP32", (-1, N_CLASSES)),
    )
    config_type = ModelConfig
    score_name = "accuracy"
    trained_score = 0.9

    def build(self, config: ModelConfig) -> nn.Module:
        return Classifier(config)

    def predict(self, module: nn.Module, inputs: Mapping[str, torch.Tensor]) -> Tensors:
        probabilities = torch.softmax(self.forward(module, inputs).float(), dim=-1)
        return {"predictions": probabilities.argmax(dim=-1), "probabilities": probabilities}

    def dataset(self, samples: int, seed: int) -> torch.utils.data.Dataset:
        return make_blobs(samples, N_CLASSES, N_FEATURES, seed)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return functional.cross_entropy(outputs, targets)

    def score(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (outputs.argmax(dim=-1) == targets).float()


MODEL = Model()
