"""Angular-loss kernel (Wang et al. 2017) in ``O(B·N)`` memory (pure function)."""

from __future__ import annotations

import math

import torch
import torch.utils.checkpoint
from torch import Tensor

from lit_metric.functional.logsumexp import masked_logsumexp

__all__ = ["angular_pair_terms"]


def _chunk_terms(
    anchor_sim: Tensor,
    pos_sim: Tensor,
    a: Tensor,
    p: Tensor,
    p_row: Tensor,
    neg_mask: Tensor,
    c_neg: float,
    c_pos: float,
) -> Tensor:
    # f_apn = c_neg · (x_a + x_p)·x_n − c_pos · x_a·x_p, with (x_a + x_p)·x_n = S[a, n] + R[p, n]
    f = c_neg * (anchor_sim[a] + pos_sim[p_row]) - c_pos * anchor_sim[a, p].unsqueeze(1)
    lse, _ = masked_logsumexp(f, neg_mask, dim=1)
    return torch.nn.functional.softplus(lse)  # log(1 + Σ_n e^f); 0 for a pair without negatives


def angular_pair_terms(
    anchor_sim: Tensor,
    pos_sim: Tensor,
    a: Tensor,
    p: Tensor,
    p_row: Tensor,
    labels: Tensor,
    ref_labels: Tensor,
    alpha: float,
    chunk_elements: int = 2**22,
) -> Tensor:
    r"""Per positive pair ``(a, p)``: ``log(1 + Σ_n exp(4tan²α (x_a + x_p)·x_n − 2(1 + tan²α) x_a·x_p))``.

    ``n`` runs over the references whose label differs from the anchor's.  The ``(P, N)`` matrix of
    exponents is built from two similarity matrices by gathering rows, never from a ``(P, N, D)``
    product, and in chunks of ``chunk_elements``; when there is more than one chunk each is
    recomputed in the backward pass (activation checkpointing), so the memory stays
    ``O(chunk_elements + B·N)`` whatever the number of positive pairs.

    Args:
        anchor_sim: ``(B, N)`` inner products of the (unit-norm) anchors with the references.
        pos_sim: ``(U, N)`` inner products of the positives that occur with the references.
        a: ``(P,)`` anchor index of each pair (rows of ``anchor_sim``).
        p: ``(P,)`` reference index of each pair's positive (columns of ``anchor_sim``).
        p_row: ``(P,)`` row of ``pos_sim`` holding that positive.
        labels: ``(B,)`` anchor labels; ``ref_labels``: ``(N,)`` reference labels.
        alpha: the angle ``α`` in radians.
        chunk_elements: memory bound of one chunk of exponents.

    Returns:
        ``(P,)`` per-pair losses.
    """
    tan_sq = math.tan(alpha) ** 2
    c_neg, c_pos = 4.0 * tan_sq, 2.0 * (1.0 + tan_sq)
    n_ref = anchor_sim.shape[1]
    step = max(1, chunk_elements // max(1, n_ref))
    n_pairs = a.shape[0]
    if n_pairs <= step:
        neg_mask = labels[a].unsqueeze(1) != ref_labels.unsqueeze(0)
        return _chunk_terms(anchor_sim, pos_sim, a, p, p_row, neg_mask, c_neg, c_pos)
    parts = []
    for start in range(0, n_pairs, step):
        sl = slice(start, start + step)
        neg_mask = labels[a[sl]].unsqueeze(1) != ref_labels.unsqueeze(0)
        parts.append(
            torch.utils.checkpoint.checkpoint(
                _chunk_terms,
                anchor_sim,
                pos_sim,
                a[sl],
                p[sl],
                p_row[sl],
                neg_mask,
                c_neg,
                c_pos,
                use_reentrant=False,
            )
        )
    return torch.cat(parts)
