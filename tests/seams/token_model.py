"""A seam-test model (tests/test_seam.py) over sequences of any length: INT64 token ids
(declared 0 to 99) of shape (-1, -1), averaged embeddings into 2 classes. Requests of different
lengths must each be batched with their own length. Trained on synthetic sequences whose class
is whether most tokens are below 50."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional
from torch.utils.data import TensorDataset

from .seam import ModelSeam, Tensors, TensorSpec

VOCABULARY = 100
LENGTH = 12  # the training data's length; requests may have any


@dataclass(frozen=True)
class ModelConfig:
    vocabulary: int = VOCABULARY
    width: int = 16
    n_classes: int = 2


class MeanEmbedding(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(config.vocabulary, config.width)
        self.head = nn.Linear(config.width, config.n_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.embedding(tokens).mean(dim=1))


def sequences(samples: int, seed: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (samples,), generator=generator)
    low = torch.randint(0, 50, (samples, LENGTH), generator=generator)
    tokens = torch.where(labels[:, None] == 1, low, low + 50)
    return TensorDataset(tokens, labels)


class Model(ModelSeam):
    name = "tokens"
    inputs = (TensorSpec("tokens", "INT64", (-1, -1), low=0, high=VOCABULARY - 1),)
    outputs = (TensorSpec("label", "INT64", (-1,)), TensorSpec("logits", "FP32", (-1, 2)))
    config_type = ModelConfig
    score_name = "accuracy"
    trained_score = 0.9

    def build(self, config: ModelConfig) -> nn.Module:
        return MeanEmbedding(config)

    def predict(self, module: nn.Module, inputs: Mapping[str, torch.Tensor]) -> Tensors:
        logits = self.forward(module, inputs).float()
        return {"label": logits.argmax(dim=-1), "logits": logits}

    def dataset(self, samples: int, seed: int) -> TensorDataset:
        return sequences(samples, seed)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return functional.cross_entropy(outputs, targets)

    def score(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (outputs.argmax(dim=-1) == targets).float()


MODEL = Model()
