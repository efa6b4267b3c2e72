"""Triplet-margin kernels (pure functions)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["triplet_margin_all_sum"]


def triplet_margin_all_sum(
    dissim: Tensor, pos_mask: Tensor, neg_mask: Tensor, margin: float
) -> tuple[Tensor, Tensor, Tensor]:
    """``Σ max(0, d_ap − d_an + m)`` over *every* valid triplet, without a B×N×N tensor.

    For each anchor the negatives' dissimilarities are sorted once with their prefix sums; for a
    positive with threshold ``t = d_ap + m`` the violating negatives are those with ``d_an < t``, found
    by binary search, and their contribution is ``count·t − Σ d_an``.  Time ``O(B·N·log N)``, memory
    ``O(B·N)``; the gradient flows through ``d_ap`` (weight ``count``) and the gathered ``d_an``.

    Args:
        dissim: ``(B, N)`` dissimilarities (smaller = closer), differentiable.
        pos_mask, neg_mask: ``(B, N)`` boolean masks.
        margin: the margin ``m`` (in the units of ``dissim``).

    Returns:
        ``(total, n_triplets, n_nonzero)``: the sum, the number of valid triplets and the number with a
        strictly positive term.
    """
    inf = torch.full_like(dissim, float("inf"))
    key = torch.where(neg_mask, dissim.detach(), inf)
    sorted_key, order = key.sort(dim=1)
    sorted_vals = torch.where(neg_mask, dissim, torch.zeros_like(dissim)).gather(1, order)
    prefix = torch.nn.functional.pad(sorted_vals.cumsum(1), (1, 0))  # (B, N+1): prefix[k] = sum of first k
    threshold = dissim + margin  # (B, N), only meaningful where pos_mask
    count = torch.searchsorted(sorted_key, threshold.detach().contiguous(), right=False)  # #(d_an < t)
    count = torch.where(pos_mask, count, torch.zeros_like(count))
    terms = count.to(dissim.dtype) * threshold - prefix.gather(1, count)
    total = torch.where(pos_mask, terms, torch.zeros_like(terms)).sum()
    n_triplets = (pos_mask.sum(1) * neg_mask.sum(1)).sum()
    return total, n_triplets, count.sum()
