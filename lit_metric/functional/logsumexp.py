"""Masked and segmented log-sum-exp / max reductions that never produce NaN gradients.

An empty set (a row with no selected entry, a segment with no member) reduces to ``-inf`` in the
value returned and is flagged in the boolean ``nonempty`` output; the computation itself only
sees finite numbers, so ``backward()`` gives zeros there instead of NaN.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["masked_logsumexp", "masked_max", "segment_logsumexp", "segment_max"]


def _finite_rows(values: Tensor, mask: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    nonempty = mask.any(dim)
    # masked entries get -inf; rows with nothing selected become all zeros (finite, discarded below)
    filled = values.masked_fill(~mask, float("-inf"))
    filled = torch.where(nonempty.unsqueeze(dim), filled, torch.zeros_like(filled))
    return filled, nonempty


def masked_logsumexp(values: Tensor, mask: Tensor, dim: int = -1) -> tuple[Tensor, Tensor]:
    """``log Σ_{mask} exp(values)`` along ``dim``.

    Args:
        values: ``(..., N, ...)`` differentiable values.
        mask: boolean, same shape: which entries take part.
        dim: the reduced dimension.

    Returns:
        ``(lse, nonempty)``: the reduction (``-inf`` where nothing is selected) and a boolean tensor
        telling where something was.

    Example:
        >>> import torch
        >>> lse, ok = masked_logsumexp(torch.zeros(2, 3), torch.tensor([[True, True, False], [False] * 3]))
        >>> lse, ok
        (tensor([0.6931,   -inf]), tensor([ True, False]))
    """
    filled, nonempty = _finite_rows(values, mask, dim)
    out = torch.logsumexp(filled, dim)
    return torch.where(nonempty, out, torch.full_like(out, float("-inf"))), nonempty


def masked_max(values: Tensor, mask: Tensor, dim: int = -1) -> tuple[Tensor, Tensor]:
    """``max_{mask} values`` along ``dim``; ``(-inf, False)`` where nothing is selected (see
    :func:`masked_logsumexp`).  Ties share the gradient evenly (``torch.amax``)."""
    filled, nonempty = _finite_rows(values, mask, dim)
    out = filled.amax(dim)
    return torch.where(nonempty, out, torch.full_like(out, float("-inf"))), nonempty


def segment_max(values: Tensor, segments: Tensor, num_segments: int) -> tuple[Tensor, Tensor]:
    """Per-segment maximum of a 1-D ``values`` tensor: ``(num_segments,)`` and the non-empty flags.

    Args:
        values: ``(M,)`` differentiable values.
        segments: ``(M,)`` long segment ids in ``[0, num_segments)``.
        num_segments: number of segments ``S``.
    """
    nonempty = torch.bincount(segments, minlength=num_segments)[:num_segments] > 0
    init = torch.zeros(num_segments, dtype=values.dtype, device=values.device)
    out = init.scatter_reduce(0, segments, values, reduce="amax", include_self=False)
    return torch.where(nonempty, out, torch.full_like(out, float("-inf"))), nonempty


def segment_logsumexp(values: Tensor, segments: Tensor, num_segments: int) -> tuple[Tensor, Tensor]:
    """Per-segment ``log Σ exp(values)`` of a 1-D tensor (stable: shifted by each segment's max).

    Args:
        values: ``(M,)`` differentiable values.
        segments: ``(M,)`` long segment ids in ``[0, num_segments)``.
        num_segments: number of segments ``S``.

    Returns:
        ``(lse, nonempty)`` of shape ``(S,)``; ``-inf`` for empty segments.

    Example:
        >>> import torch
        >>> segment_logsumexp(torch.zeros(3), torch.tensor([0, 0, 2]), 3)
        (tensor([0.6931,   -inf, 0.0000]), tensor([ True, False,  True]))
    """
    shift, nonempty = segment_max(values.detach(), segments, num_segments)
    shift = torch.where(nonempty, shift, torch.zeros_like(shift))
    summed = torch.zeros(num_segments, dtype=values.dtype, device=values.device)
    summed = summed.index_add(0, segments, torch.exp(values - shift[segments]))
    out = torch.log(torch.where(nonempty, summed, torch.ones_like(summed))) + shift
    return torch.where(nonempty, out, torch.full_like(out, float("-inf"))), nonempty
