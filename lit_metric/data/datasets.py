"""Small dataset helpers shared by the data modules."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["TensorImageDataset"]


class TensorImageDataset(Dataset[tuple[Tensor, Tensor, int]]):
    """Items ``(x, label, index)`` from an image tensor ``(N, C, H, W)`` and labels ``(N,)``.

    The dataset index is returned so that metrics can drop the duplicates a padded
    ``DistributedSampler`` adds and memory banks know which entry to update.
    """

    def __init__(self, images: Tensor, labels: Tensor, transform: Callable[[Tensor], Tensor] | None = None) -> None:
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"Expected as many labels as images, but got {labels.shape[0]} and {images.shape[0]}.")
        self.images = images
        self.labels = labels.long()
        self.transform = transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, int]:
        x = self.images[index]
        if self.transform is not None:
            x = self.transform(x)
        return x, self.labels[index], index


def as_tensor_labels(labels: object) -> Tensor:
    return torch.as_tensor(labels, dtype=torch.long)
