"""Index-tuple utilities: positive/negative masks, tuple conversion and validation, interval mining.

Tuples follow the DESIGN contract: triplets ``(a, p, n)`` or pairs ``(a1, p, a2, n)``; ``a``/``a1``/``a2``
index the anchors (``embeddings``), ``p``/``n`` the references (``ref_emb``).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "check_indices_tuple",
    "interval_triplets",
    "pair_masks",
    "pairs_to_triplets",
    "triplets_to_pairs",
]


def pair_masks(labels: Tensor, ref_labels: Tensor, self_index: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(B,), (N,) -> (B, N), (B, N)`` boolean positive and negative masks.

    ``self_index`` (B,) gives the position of each anchor among the references; that pair is neither
    positive nor negative.
    """
    same = labels.unsqueeze(1) == ref_labels.unsqueeze(0)
    neg = ~same
    if self_index is not None:
        not_self = torch.ones_like(same)
        not_self[torch.arange(labels.shape[0], device=labels.device), self_index] = False
        same = same & not_self
    return same, neg


def check_indices_tuple(
    indices_tuple: object, n_anchors: int, n_refs: int
) -> tuple[Tensor, Tensor, Tensor] | tuple[Tensor, Tensor, Tensor, Tensor]:
    """Validate arity, dtype, equal lengths and index ranges of a miner's output."""
    from lit_metric.functional.quadruplet import Quadruplets  # (a, p, n1, n2): 4 tensors, but not pairs

    if isinstance(indices_tuple, Quadruplets):
        raise TypeError(
            "Expected argument `indices_tuple` to be (a, p, n) triplets or (a1, p, a2, n) pairs, but got "
            "`Quadruplets` (a, p, n1, n2) from QuadrupletMiner: only QuadrupletLoss reads them."
        )
    if not isinstance(indices_tuple, tuple | list) or len(indices_tuple) not in (3, 4):
        n = len(indices_tuple) if isinstance(indices_tuple, tuple | list) else type(indices_tuple).__name__
        raise ValueError(
            "Expected argument `indices_tuple` to be a tuple of 3 tensors (anchor, positive, negative) "
            f"or 4 tensors (anchor1, positive, anchor2, negative), but got {n}."
        )
    tensors = tuple(indices_tuple)
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor) or t.ndim != 1:
            raise ValueError(f"Expected `indices_tuple[{i}]` to be a 1-D tensor, but got {getattr(t, 'shape', t)}.")
        if t.is_floating_point() or t.dtype == torch.bool:
            raise TypeError(f"Expected `indices_tuple[{i}]` to hold integer indices, but got dtype {t.dtype}.")
    if len(tensors) == 3:
        if not tensors[0].shape == tensors[1].shape == tensors[2].shape:
            raise ValueError(
                "Expected the triplet tensors (a, p, n) of `indices_tuple` to have equal lengths, but got "
                f"{[t.shape[0] for t in tensors]}."
            )
        bounds: tuple[int, ...] = (n_anchors, n_refs, n_refs)
    else:
        if tensors[0].shape != tensors[1].shape or tensors[2].shape != tensors[3].shape:
            raise ValueError(
                "Expected (a1, p) and (a2, n) of the pair `indices_tuple` to have matching lengths, but got "
                f"{[t.shape[0] for t in tensors]}."
            )
        bounds = (n_anchors, n_refs, n_anchors, n_refs)
    for i, (t, hi) in enumerate(zip(tensors, bounds)):
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= hi):
            what = "embeddings (anchors)" if hi == n_anchors and i in (0, 2) else "ref_emb (references)"
            raise ValueError(
                f"Expected `indices_tuple[{i}]` to index {what} in [0, {hi}), but got values in "
                f"[{int(t.min())}, {int(t.max())}]."
            )
    return tuple(t.long() for t in tensors)  # type: ignore[return-value]


def triplets_to_pairs(a: Tensor, p: Tensor, n: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Triplets -> unique positive pairs ``(a1, p)`` and unique negative pairs ``(a2, n)``."""
    pos = torch.unique(torch.stack([a, p], 1), dim=0) if a.numel() else torch.stack([a, p], 1)
    neg = torch.unique(torch.stack([a, n], 1), dim=0) if a.numel() else torch.stack([a, n], 1)
    return pos[:, 0], pos[:, 1], neg[:, 0], neg[:, 1]


def pairs_to_triplets(a1: Tensor, p: Tensor, a2: Tensor, n: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Pairs -> every triplet ``(a, p, n)`` with ``(a, p)`` a positive pair and ``(a, n)`` a negative pair."""
    match = a1.unsqueeze(1) == a2.unsqueeze(0)
    i, j = match.nonzero(as_tuple=True)
    return a1[i], p[i], n[j]


def interval_triplets(
    ap: Tensor,
    an: Tensor,
    pos_mask: Tensor,
    neg_mask: Tensor,
    lower: Tensor | None,
    upper: Tensor | None,
    lower_inclusive: bool = False,
    upper_inclusive: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """All triplets whose negative dissimilarity lies in an interval set per positive pair.

    Every classic triplet strategy keeps, for an anchor ``a`` and positive ``p``, the negatives whose
    dissimilarity ``d_an`` lies in an interval that depends on ``d_ap`` (all: everything; hard:
    ``d_an <= d_ap``; semi-hard: ``d_ap < d_an <= d_ap + m``; easy: ``d_an > d_ap + m``).  Sorting each
    anchor's negatives once and binary-searching the bounds yields the triplets in
    ``O(B·N·log N + T)`` time and ``O(B·N + T)`` memory (T = number of triplets) — never a B×N×N tensor.

    Args:
        ap: ``(B, N)`` dissimilarities used for the bounds' positive side (rows = anchors).
        an: ``(B, N)`` dissimilarities of anchors to references (negative side).
        pos_mask, neg_mask: ``(B, N)`` boolean masks.
        lower, upper: ``(B, N)`` bounds per (anchor, positive), or None for unbounded.

    Returns:
        ``(a, p, n)`` long tensors.
    """
    device = ap.device
    key = torch.where(neg_mask, an, torch.full_like(an, float("inf")))
    sorted_key, order = key.sort(dim=1)
    n_neg = neg_mask.sum(1, keepdim=True).expand_as(ap)
    a_idx, p_idx = pos_mask.nonzero(as_tuple=True)
    if a_idx.numel() == 0:
        empty = torch.empty(0, dtype=torch.long, device=device)
        return empty, empty, empty
    # binary-search only at the positive pairs (P of them), each in its anchor's sorted negatives
    rows = sorted_key[a_idx]  # (P, N)
    n_neg_p = n_neg[a_idx, p_idx]
    if lower is None:
        lo = torch.zeros_like(a_idx)
    else:
        bound = lower[a_idx, p_idx].unsqueeze(1).contiguous()
        lo = torch.searchsorted(rows, bound, right=not lower_inclusive).squeeze(1)
    if upper is None:
        hi = n_neg_p
    else:
        bound = upper[a_idx, p_idx].unsqueeze(1).contiguous()
        hi = torch.minimum(torch.searchsorted(rows, bound, right=upper_inclusive).squeeze(1), n_neg_p)
    counts = (hi - lo).clamp_min(0)
    total = int(counts.sum())
    pair_id = torch.repeat_interleave(torch.arange(counts.numel(), device=device), counts, output_size=total)
    starts = torch.cumsum(counts, 0) - counts
    within = torch.arange(total, device=device) - starts[pair_id]
    a = a_idx[pair_id]
    n = order[a, lo[pair_id] + within]
    return a, p_idx[pair_id], n
