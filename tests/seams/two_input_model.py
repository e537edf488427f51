"""A seam-test model (tests/test_seam.py) with two inputs of different datatypes and a
regression head: FP32 features and INT64 category ids (declared 0 to 9, into an embedding),
answering an FP32 value and the same value in FP16 and BF16. Trained on a synthetic linear
target."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional
from torch.utils.data import Dataset

from .seam import ModelSeam, Tensors, TensorSpec

N_FEATURES = 3
N_CATEGORIES = 10


@dataclass(frozen=True)
class ModelConfig:
    n_features: int = N_FEATURES
    n_categories: int = N_CATEGORIES
    embedding: int = 4
    hidden: int = 32


class Regressor(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(config.n_categories, config.embedding)
        self.net = nn.Sequential(
            nn.Linear(config.n_features + config.embedding, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, 1),
        )

    def forward(self, features: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([features, self.embedding(category)], dim=-1)).squeeze(-1)


class Rows(Dataset):
    """Named inputs as a request carries them, and a target: a linear function of the features
    plus an offset per category."""

    def __init__(self, samples: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.features = torch.randn(samples, N_FEATURES, generator=generator)
        self.category = torch.randint(0, N_CATEGORIES, (samples,), generator=generator)
        offsets = torch.linspace(-2, 2, N_CATEGORIES)
        self.target = self.features @ torch.tensor([1.0, -2.0, 0.5]) + offsets[self.category]

    def __len__(self) -> int:
        return len(self.target)

    def __getitem__(self, i: int):
        return {"features": self.features[i], "category": self.category[i]}, self.target[i]


class Model(ModelSeam):
    name = "price"
    version = "2"
    inputs = (
        TensorSpec("features", "FP32", (-1, N_FEATURES), low=-1e3, high=1e3),
        TensorSpec("category", "INT64", (-1,), low=0, high=N_CATEGORIES - 1),
    )
    outputs = (
        TensorSpec("value", "FP32", (-1,)),
        TensorSpec("value_fp16", "FP16", (-1,)),
        TensorSpec("value_bf16", "BF16", (-1,)),
    )
    config_type = ModelConfig
    score_name = "neg_abs_error"
    trained_score = -1.5  # predicting 0 scores about -2.1

    def build(self, config: ModelConfig) -> nn.Module:
        return Regressor(config)

    def predict(self, module: nn.Module, inputs: Mapping[str, torch.Tensor]) -> Tensors:
        value = self.forward(module, inputs).float()
        return {
            "value": value,
            "value_fp16": value.clamp(-6e4, 6e4).half(),
            "value_bf16": value.bfloat16(),
        }

    def dataset(self, samples: int, seed: int) -> Dataset:
        return Rows(samples, seed)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return functional.mse_loss(outputs, targets)

    def score(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return -(outputs - targets).abs()


MODEL = Model()
