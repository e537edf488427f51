"""A seam-test model (tests/test_seam.py) the size people serve: a ResNet-18 (11 M parameters)
on raw UINT8 pixels of shape (-1, 3, 224, 224), scaled and normalized in forward (the
pre-processing training and serving share). Trained on synthetic images whose class is their
tint (red, green, blue or none), so a few steps learn it; the head has 4 classes, the rest is
torchvision's resnet18 layer for layer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional
from torch.utils.data import TensorDataset

from .seam import ModelSeam, Tensors, TensorSpec

SIZE = 224
N_CLASSES = 4
BLOCKS = (2, 2, 2, 2)  # basic blocks per stage: ResNet-18
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)  # ImageNet's, as torchvision's
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@dataclass(frozen=True)
class ModelConfig:
    n_classes: int = N_CLASSES


class BasicBlock(nn.Module):
    def __init__(self, inputs: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = None
        if stride != 1 or inputs != width:
            self.downsample = nn.Sequential(
                nn.Conv2d(inputs, width, 1, stride, bias=False), nn.BatchNorm2d(width)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = functional.relu(self.bn1(self.conv1(x)))
        return functional.relu(self.bn2(self.conv2(out)) + shortcut)


class ResNet(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, inputs = [], 64
        for i, blocks in enumerate(BLOCKS):
            width = 64 * 2**i
            for b in range(blocks):
                layers.append(BasicBlock(inputs, width, 2 if b == 0 and i > 0 else 1))
                inputs = width
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(inputs, config.n_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = functional.max_pool2d(functional.relu(self.bn1(self.conv1(images))), 3, 2, 1)
        return self.fc(self.layers(x).mean(dim=(2, 3)))


def tinted_images(samples: int, seed: int) -> TensorDataset:
    """Noise, brighter in one channel for classes 0-2 (red, green, blue), even for class 3."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, N_CLASSES, (samples,), generator=generator)
    pixels = torch.randint(0, 80, (samples, 3, SIZE, SIZE), generator=generator, dtype=torch.uint8)
    tint = (functional.one_hot(labels, N_CLASSES)[:, :3, None, None] * 160).to(torch.uint8)
    return TensorDataset(pixels + tint, labels)


class Model(ModelSeam):
    name = "resnet18"
    inputs = (TensorSpec("pixels", "UINT8", (-1, 3, SIZE, SIZE)),)
    outputs = (
        TensorSpec("label", "INT64", (-1,)),
        TensorSpec("probabilities", "FP32", (-1, N_CLASSES)),
    )
    config_type = ModelConfig
    score_name = "accuracy"
    trained_score = 0.9  # chance is 0.25
    lr = 1e-3  # the example's 1e-2 is too much for a ResNet
    batch_size = 16

    def build(self, config: ModelConfig) -> nn.Module:
        return ResNet(config)

    def forward(self, module: nn.Module, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        pixels = inputs["pixels"]
        images = (pixels.float() / 255 - MEAN.to(pixels.device)) / STD.to(pixels.device)
        return module(images)

    def predict(self, module: nn.Module, inputs: Mapping[str, torch.Tensor]) -> Tensors:
        probabilities = torch.softmax(self.forward(module, inputs).float(), dim=-1)
        return {"label": probabilities.argmax(dim=-1), "probabilities": probabilities}

    def dataset(self, samples: int, seed: int) -> TensorDataset:
        return tinted_images(samples, seed)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return functional.cross_entropy(outputs, targets)

    def score(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (outputs.argmax(dim=-1) == targets).float()


MODEL = Model()
