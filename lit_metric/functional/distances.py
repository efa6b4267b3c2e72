"""Pairwise distance and similarity matrices (pure functions)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["cosine_similarity_matrix", "dot_product_matrix", "euclidean_distance_matrix", "safe_sqrt"]


class _SafeSqrt(torch.autograd.Function):
    """``sqrt(max(x, 0))`` in two in-place passes; backward ``g / (2·sqrt(x))`` where the root is > 0, else 0."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        root = x.clamp_min(0).sqrt_()
        ctx.save_for_backward(root)
        return root

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (root,) = ctx.saved_tensors
        # differentiable ops on the saved output: double backward works too
        return torch.where(root > 0, grad / (2 * root), torch.zeros_like(grad))


def safe_sqrt(x: Tensor) -> Tensor:
    """``sqrt(max(x, 0))`` whose gradient at 0 is 0 instead of inf (self pairs, duplicates)."""
    return _SafeSqrt.apply(x)


def euclidean_distance_matrix(x: Tensor, y: Tensor, squared: bool = False) -> Tensor:
    """``(N, D), (M, D) -> (N, M)`` Euclidean (or squared Euclidean) distances.

    Uses ``‖x‖² + ‖y‖² − 2 x·y`` clamped at 0, all of it from one matmul of the augmented rows
    ``[−2x, ‖x‖², 1]·[y, 1, ‖y‖²]`` (no extra pass over the (N, M) matrix); the square root has a zero
    gradient at 0.
    """
    x_sq, y_sq = (x * x).sum(1, keepdim=True), (y * y).sum(1, keepdim=True)
    x_aug = torch.cat([-2.0 * x, x_sq, torch.ones_like(x_sq)], dim=1)
    y_aug = torch.cat([y, torch.ones_like(y_sq), y_sq], dim=1)
    sq = (x_aug @ y_aug.T).clamp_min_(0)
    return sq if squared else safe_sqrt(sq)


def cosine_similarity_matrix(x: Tensor, y: Tensor, eps: float = 1e-12) -> Tensor:
    """``(N, D), (M, D) -> (N, M)`` cosine similarities (``y is x``: normalised once)."""
    xn = torch.nn.functional.normalize(x, dim=1, eps=eps)
    yn = xn if y is x else torch.nn.functional.normalize(y, dim=1, eps=eps)
    return xn @ yn.T


def dot_product_matrix(x: Tensor, y: Tensor) -> Tensor:
    """``(N, D), (M, D) -> (N, M)`` inner products."""
    return x @ y.T
