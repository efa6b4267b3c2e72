"""Per-class means of embeddings (class-vector initialisation, within-class scatter)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["class_means"]


def class_means(embeddings: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """``(C, D)`` mean embedding of each class (zeros where a class has no sample) and ``(C,)`` counts, both
    float64, from ``(N, D)`` embeddings and ``(N,)`` labels in ``[0, C)``.

    Raises:
        ValueError: on labels outside ``[0, num_classes)``.
    """
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"Expected training labels in [0, {num_classes}) for the loss's {num_classes} class vectors, but got "
            f"labels in [{int(labels.min())}, {int(labels.max())}]. Set the loss's `num_classes` to the number of classes."
        )
    sums = torch.zeros(num_classes, embeddings.shape[1], dtype=torch.float64, device=embeddings.device)
    sums.index_add_(0, labels, embeddings.double())
    counts = torch.bincount(labels, minlength=num_classes).to(sums)
    return sums / counts.clamp_min(1).unsqueeze(1), counts
