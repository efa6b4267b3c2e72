"""Angular-loss kernel (Wang et al. 2017) in ``O(B·N)`` memory (pure function)."""

from __future__ import annotations

import math

import torch
import torch.utils.checkpoint
from torch import Tensor

__all__ = ["angular_pair_terms"]


def _chunk_terms(left: Tensor, right: Tensor, ap: Tensor, a: Tensor, p_row: Tensor) -> Tensor:
    # log Σ_n exp(c_neg·S[a, n] + c_neg·R[p, n] − c_pos·S[a, p]): the −c_pos·S[a, p] is constant along n,
    # so it leaves the log-sum-exp; non-negatives are −inf in ``left`` already
    lse = torch.logsumexp(left[a] + right[p_row], dim=1) - ap
    return torch.nn.functional.softplus(lse)  # log(1 + Σ_n e^f)


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

    ``n`` runs over the references whose label differs from the anchor's.  The exponent of a pair is
    the sum of a row of ``4tan²α·S`` (anchor side, with −∞ at the non-negatives, masked once on the
    ``(B, N)`` matrix) and a row of ``4tan²α·R`` (positive side) minus a per-pair constant that leaves the
    log-sum-exp: two row gathers and one add per element of the ``(P, N)`` exponent matrix, never a
    ``(P, N, D)`` product.  It is processed in chunks of ``chunk_elements``; with more than one chunk
    each is recomputed in the backward pass (activation checkpointing), so the memory stays
    ``O(chunk_elements + B·N)`` whatever the number of positive pairs.  A pair whose anchor has no
    negative contributes 0.

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
    neg_mask = labels.unsqueeze(1) != ref_labels.unsqueeze(0)  # (B, N)
    has_neg = neg_mask.any(1)
    left = torch.where(neg_mask, c_neg * anchor_sim, torch.full_like(anchor_sim, float("-inf")))
    left = torch.where(has_neg.unsqueeze(1), left, torch.zeros_like(left))  # finite rows: no NaN in backward
    right = c_neg * pos_sim
    ap = c_pos * anchor_sim[a, p]
    n_ref = anchor_sim.shape[1]
    step = max(1, chunk_elements // max(1, n_ref))
    n_pairs = a.shape[0]
    if n_pairs <= step:
        terms = _chunk_terms(left, right, ap, a, p_row)
    else:
        terms = torch.cat(
            [
                torch.utils.checkpoint.checkpoint(
                    _chunk_terms,
                    left,
                    right,
                    ap[start : start + step],
                    a[start : start + step],
                    p_row[start : start + step],
                    use_reentrant=False,
                )
                for start in range(0, n_pairs, step)
            ]
        )
    return torch.where(has_neg[a], terms, torch.zeros_like(terms))
