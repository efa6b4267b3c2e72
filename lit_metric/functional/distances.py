"""Pairwise distance and similarity matrices (pure functions)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["cosine_similarity_matrix", "dot_product_matrix", "euclidean_distance_matrix", "safe_sqrt"]


def safe_sqrt(x: Tensor) -> Tensor:
    """``sqrt(max(x, 0))`` whose gradient at 0 is 0 instead of inf (self pairs, duplicates)."""
    positive = x > 0
    return torch.where(positive, x.clamp_min(torch.finfo(x.dtype).tiny).sqrt(), torch.zeros_like(x))


def euclidean_distance_matrix(x: Tensor, y: Tensor, squared: bool = False) -> Tensor:
    """``(N, D), (M, D) -> (N, M)`` Euclidean (or squared Euclidean) distances.

    Uses ``‖x‖² + ‖y‖² − 2 x·y`` (one matmul) clamped at 0; the square root has a zero gradient at 0.
    """
    sq = (x * x).sum(1, keepdim=True) + (y * y).sum(1).unsqueeze(0) - 2.0 * (x @ y.T)
    sq = sq.clamp_min(0)
    return sq if squared else safe_sqrt(sq)


def cosine_similarity_matrix(x: Tensor, y: Tensor, eps: float = 1e-12) -> Tensor:
    """``(N, D), (M, D) -> (N, M)`` cosine similarities."""
    x = torch.nn.functional.normalize(x, dim=1, eps=eps)
    y = torch.nn.functional.normalize(y, dim=1, eps=eps)
    return x @ y.T


def dot_product_matrix(x: Tensor, y: Tensor) -> Tensor:
    """``(N, D), (M, D) -> (N, M)`` inner products."""
    return x @ y.T
