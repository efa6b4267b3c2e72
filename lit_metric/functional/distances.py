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


class _EuclideanMatrix(torch.autograd.Function):
    """Forward: one matmul of augmented rows, clamp, (sqrt).  Backward: the analytic gradient with two matmuls,

    ``∂/∂x_i = x_i Σ_j r_ij − Σ_j r_ij y_j`` and ``∂/∂y_j = y_j Σ_i r_ij − Σ_i r_ij x_i`` with ``r = G / d``
    (0 where ``d = 0``) for the distance and ``r = 2G`` for the squared distance.  The backward is made of
    differentiable ops, so double backward works.
    """

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, squared: bool) -> Tensor:  # type: ignore[override]
        x_sq, y_sq = (x * x).sum(1, keepdim=True), (y * y).sum(1, keepdim=True)
        x_aug = torch.cat([-2.0 * x, x_sq, torch.ones_like(x_sq)], dim=1)
        y_aug = torch.cat([y, torch.ones_like(y_sq), y_sq], dim=1)
        out = (x_aug @ y_aug.T).clamp_min_(0)
        if not squared:
            out = out.sqrt_()
        ctx.squared = squared
        ctx.save_for_backward(x, y, out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:  # type: ignore[override]
        x, y, out = ctx.saved_tensors
        if ctx.squared:
            ratio = 2.0 * grad
        else:
            ratio = torch.where(out > 0, grad / out, torch.zeros_like(grad))
        ratio = ratio.to(x.dtype)
        grad_x = grad_y = None
        if ctx.needs_input_grad[0]:
            grad_x = x * ratio.sum(1, keepdim=True) - ratio @ y.to(x.dtype)
        if ctx.needs_input_grad[1]:
            grad_y = (y * ratio.sum(0).unsqueeze(1).to(y.dtype) - ratio.T @ x.to(y.dtype)).to(y.dtype)
        return grad_x, grad_y, None


def euclidean_distance_matrix(x: Tensor, y: Tensor, squared: bool = False) -> Tensor:
    """``(N, D), (M, D) -> (N, M)`` Euclidean (or squared Euclidean) distances.

    Uses ``‖x‖² + ‖y‖² − 2 x·y`` clamped at 0, all of it from one matmul of the augmented rows
    ``[−2x, ‖x‖², 1]·[y, 1, ‖y‖²]`` (no extra pass over the (N, M) matrix), and the analytic gradient
    (two matmuls, a few passes); the distance's gradient is 0 where the distance is 0 (self pairs,
    duplicates).
    """
    return _EuclideanMatrix.apply(x, y, squared)


def cosine_similarity_matrix(x: Tensor, y: Tensor, eps: float = 1e-12) -> Tensor:
    """``(N, D), (M, D) -> (N, M)`` cosine similarities (``y is x``: normalised once)."""
    xn = torch.nn.functional.normalize(x, dim=1, eps=eps)
    yn = xn if y is x else torch.nn.functional.normalize(y, dim=1, eps=eps)
    return xn @ yn.T


def dot_product_matrix(x: Tensor, y: Tensor) -> Tensor:
    """``(N, D), (M, D) -> (N, M)`` inner products."""
    return x @ y.T
