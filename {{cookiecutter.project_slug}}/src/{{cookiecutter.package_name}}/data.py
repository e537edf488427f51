"""Synthetic, reproducible training data: Gaussian blobs, one per class. No downloads."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

CENTER_SPREAD = 4.0


def class_centers(n_classes: int, n_features: int, seed: int = 0) -> torch.Tensor:
    """The mean of each class; a point at a center belongs to that class."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n_classes, n_features, generator=generator) * CENTER_SPREAD


def make_blobs(n_samples: int, n_classes: int, n_features: int, seed: int = 0) -> TensorDataset:
    """`n_samples` points scattered (unit variance) around the class centers, with their labels."""
    generator = torch.Generator().manual_seed(seed + 1)
    labels = torch.randint(0, n_classes, (n_samples,), generator=generator)
    noise = torch.randn(n_samples, n_features, generator=generator)
    features = class_centers(n_classes, n_features, seed)[labels] + noise
    return TensorDataset(features, labels)
