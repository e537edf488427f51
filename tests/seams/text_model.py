"""A seam-test model (tests/test_seam.py) on raw text: one BYTES input (UTF-8 sentences of any
length, at most 1 KiB), tokenized in forward (words hashed to ids, averaged by an EmbeddingBag,
so no padding), answering a label and its name as BYTES. Trained on synthetic reviews whose
class is whether their words are kind or unkind."""

from __future__ import annotations

import random
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional

from .seam import ModelSeam, Tensors, TensorSpec

KIND = ["good", "great", "lovely", "superb", "fine", "happy"]
UNKIND = ["bad", "awful", "dull", "poor", "sad", "boring"]
FILLER = ["the", "film", "was", "a", "plot", "and", "very", "cast", "ending"]
LABELS = [b"unkind", b"kind"]
BUCKETS = 4096  # words are hashed into this many ids


@dataclass(frozen=True)
class ModelConfig:
    width: int = 32
    n_classes: int = 2


class BytesBag(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.embedding = nn.EmbeddingBag(BUCKETS, config.width, mode="mean")
        self.head = nn.Linear(config.width, config.n_classes)

    def forward(self, tokens: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        device = self.head.weight.device
        return self.head(self.embedding(tokens.to(device), offsets.to(device)))


def review(rng: random.Random, label: int) -> bytes:
    words = [rng.choice(FILLER) for _ in range(rng.randint(2, 8))]
    for _ in range(rng.randint(1, 3)):
        words.insert(rng.randint(0, len(words)), rng.choice(KIND if label else UNKIND))
    return " ".join(words).encode()


class Reviews(torch.utils.data.Dataset):
    def __init__(self, samples: int, seed: int) -> None:
        rng = random.Random(seed)
        self.labels = [rng.randint(0, 1) for _ in range(samples)]
        self.texts = [review(rng, label) for label in self.labels]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return {"text": self.texts[index]}, self.labels[index]


class Model(ModelSeam):
    name = "reviews"
    inputs = (TensorSpec("text", "BYTES", (-1,), max_bytes=1024),)
    outputs = (
        TensorSpec("label", "INT64", (-1,)),
        TensorSpec("label_name", "BYTES", (-1,)),
        TensorSpec("probabilities", "FP32", (-1, 2)),
    )
    config_type = ModelConfig
    score_name = "accuracy"
    trained_score = 0.9

    def build(self, config: ModelConfig) -> nn.Module:
        return BytesBag(config)

    def forward(self, module: nn.Module, inputs: Mapping[str, list[bytes]]) -> torch.Tensor:
        words = [text.split() for text in inputs["text"]]  # a list of bytes: each text a bag
        tokens = torch.tensor([zlib.crc32(w) % BUCKETS for bag in words for w in bag] or [0])
        offsets = torch.tensor([0, *map(len, words[:-1])]).cumsum(0)
        return module(tokens, offsets)

    def predict(self, module: nn.Module, inputs: Mapping[str, list[bytes]]) -> Tensors:
        probabilities = torch.softmax(self.forward(module, inputs).float(), dim=-1)
        label = probabilities.argmax(dim=-1)
        return {
            "label": label,
            "label_name": [LABELS[i] for i in label.tolist()],
            "probabilities": probabilities,
        }

    def example_inputs(self, rows: int = 1) -> Tensors:
        rng = random.Random(rows)
        return {"text": [review(rng, row % 2) for row in range(rows)]}

    def dataset(self, samples: int, seed: int) -> Reviews:
        return Reviews(samples, seed)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return functional.cross_entropy(outputs, targets)

    def score(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (outputs.argmax(dim=-1) == targets).float()


MODEL = Model()
