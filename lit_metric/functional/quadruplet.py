"""Quadruplet index tuples and the all-quadruplet kernel of the quadruplet loss (pure functions).

A quadruplet ``(a, p, n1, n2)`` (Chen et al. 2017) is an anchor, a positive of its class, a negative
``n1`` and a second negative ``n2`` whose class differs from both the anchor's and ``n1``'s.  It has
four index tensors like the pair format ``(a1, p, a2, n)`` of the other losses, so it travels in its
own type, :class:`Quadruplets`, which :class:`~lit_metric.losses.QuadrupletLoss` requires and
whose ``n1``/``n2`` index the references.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["Quadruplets", "check_quadruplets", "quadruplet_pair_gap_all_sum", "segment_count_less"]


class Quadruplets(NamedTuple):
    """``(a, p, n1, n2)`` long tensors of equal length: ``a`` indexes the anchors (embeddings), ``p``,
    ``n1`` and ``n2`` the references.  Not interchangeable with the ``(a1, p, a2, n)`` pair format."""

    a: Tensor
    p: Tensor
    n1: Tensor
    n2: Tensor


def check_quadruplets(quadruplets: object, n_anchors: int, n_refs: int) -> Quadruplets:
    """Validate a :class:`Quadruplets` (type, 1-D integer tensors of equal length, index ranges).

    Raises:
        TypeError: if it is not a :class:`Quadruplets` (a plain 4-tuple means ``(a1, p, a2, n)`` pairs
            everywhere else) or holds non-integer tensors.
        ValueError: on unequal lengths, non-1-D tensors or out-of-range indices.
    """
    if not isinstance(quadruplets, Quadruplets):
        raise TypeError(
            "Expected argument `indices_tuple` to be a `Quadruplets` (a, p, n1, n2) — e.g. from "
            "`QuadrupletMiner` — or None (all quadruplets), but got "
            f"{type(quadruplets).__name__}. A plain 4-tuple means (a1, p, a2, n) pairs for the other losses; "
            "wrap real quadruplets as `lit_metric.functional.quadruplet.Quadruplets(a, p, n1, n2)`."
        )
    for name, t in zip(Quadruplets._fields, quadruplets):
        if not isinstance(t, Tensor) or t.ndim != 1:
            raise ValueError(f"Expected `indices_tuple.{name}` to be a 1-D tensor, but got {getattr(t, 'shape', t)}.")
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"Expected `indices_tuple.{name}` to hold integer indices, but got dtype {t.dtype}.")
    lengths = [t.shape[0] for t in quadruplets]
    if len(set(lengths)) != 1:
        raise ValueError(f"Expected the four tensors of `indices_tuple` to have equal lengths, but got {lengths}.")
    for name, t, hi in zip(Quadruplets._fields, quadruplets, (n_anchors, n_refs, n_refs, n_refs)):
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= hi):
            what = "embeddings (anchors)" if name == "a" else "ref_emb (references)"
            raise ValueError(
                f"Expected `indices_tuple.{name}` to index {what} in [0, {hi}), but got values in "
                f"[{int(t.min())}, {int(t.max())}]."
            )
    return Quadruplets(*(t.long() for t in quadruplets))


def segment_count_less(values: Tensor, starts: Tensor, ends: Tensor, query: Tensor) -> Tensor:
    """For each query ``q`` with a segment ``[starts, ends)`` of the sorted 1-D ``values``: how many of
    the segment's values are ``< q`` (a vectorised binary search; ``O(Q log L)`` time, ``O(Q)`` memory).

    Example:
        >>> import torch
        >>> v = torch.tensor([1.0, 2.0, 3.0, 0.5, 4.0])  # two sorted segments: [0, 3) and [3, 5)
        >>> segment_count_less(v, torch.tensor([0, 3]), torch.tensor([3, 5]), torch.tensor([2.5, 2.5])).tolist()
        [2, 1]
    """
    if values.numel() == 0:
        return torch.zeros_like(starts)
    lo, hi = starts.clone(), ends.clone()
    longest = int((ends - starts).max()) if starts.numel() else 0
    for _ in range(max(1, math.ceil(math.log2(longest + 1)) + 1)):
        active = lo < hi
        mid = torch.where(active, (lo + hi) // 2, lo)
        go_right = active & (values[mid.clamp_max(values.numel() - 1)] < query)
        lo = torch.where(go_right, mid + 1, lo)
        hi = torch.where(active & ~go_right, mid, hi)
    return lo - starts


def quadruplet_pair_gap_all_sum(
    pos_dissim: Tensor,
    pos_class: Tensor,
    ref_dissim: Tensor,
    ref_class: Tensor,
    margin: float,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""``Σ max(0, d_ap − d_kl + m)`` over every positive pair ``(a, p)`` and every ordered reference pair
    ``(k, l)`` whose classes differ from each other and from the anchor's — without enumerating them.

    Per positive pair with threshold ``t = d_ap + m`` the violators are the negative reference pairs
    with ``d_kl < t``.  Each unordered negative pair ``{k, l}`` (``k < l``, value ``d_kl``) stands for its
    two orders.  Over *all* of them the count and ``Σ (t − d_kl)`` of the violators come from one sorted
    list with prefix sums; the pairs touching the anchor's class ``c`` are subtracted using a second
    list that holds every unordered pair once under each of its two classes, grouped by class and
    sorted by value within a group (a vectorised binary search per group).  Time
    ``O(N² log N + P log N)``, memory ``O(N² + P)`` for ``N`` references and ``P`` positive pairs.  The
    prefix sums run in float64 (the subtraction would otherwise lose the small sums).

    Args:
        pos_dissim: ``(P,)`` dissimilarities of the positive pairs (differentiable).
        pos_class: ``(P,)`` class index (into ``0..C-1``) of each positive pair's anchor.
        ref_dissim: ``(N, N)`` dissimilarities among the references (differentiable; only the upper
            triangle is read).
        ref_class: ``(N,)`` class index of each reference, in ``0..C-1``.
        margin: the margin ``m``.

    Returns:
        ``(total, n_quadruplets, n_nonzero)`` — the sum and the counts of valid and of violating
        quadruplets, ordered pairs ``(k, l)`` counted twice.
    """
    n = ref_class.shape[0]
    num_classes = int(ref_class.max()) + 1 if n else 0
    upper_neg = (ref_class.unsqueeze(1) != ref_class.unsqueeze(0)).triu(diagonal=1)
    k_idx, l_idx = upper_neg.nonzero(as_tuple=True)
    vals = ref_dissim[k_idx, l_idx]  # (M,) unordered negative pairs
    m = vals.shape[0]
    threshold = pos_dissim + margin
    t64 = threshold.to(torch.float64)
    flat = vals.detach()
    t_det = threshold.detach().to(flat.dtype).contiguous()
    # every unordered negative pair, sorted by value
    sorted_all, order_all = flat.sort()
    prefix_all = torch.nn.functional.pad(vals.to(torch.float64)[order_all].cumsum(0), (1, 0))
    cnt_all = torch.searchsorted(sorted_all, t_det, right=False)
    # every pair once under each of its two classes: grouped by class, sorted by value in a group
    both = torch.cat([vals, vals])
    group = torch.cat([ref_class[k_idx], ref_class[l_idx]])
    order_val = both.detach().argsort(stable=True)
    order_grp = order_val[group[order_val].argsort(stable=True)]
    sorted_grp = both.detach()[order_grp]
    prefix_grp = torch.nn.functional.pad(both.to(torch.float64)[order_grp].cumsum(0), (1, 0))
    seg_len = torch.bincount(group, minlength=num_classes)
    seg_end = seg_len.cumsum(0)
    seg_start = seg_end - seg_len
    start, end = seg_start[pos_class], seg_end[pos_class]
    cnt_grp = segment_count_less(sorted_grp, start, end, t_det)
    sum_all = cnt_all.to(torch.float64) * t64 - prefix_all[cnt_all]
    sum_grp = cnt_grp.to(torch.float64) * t64 - (prefix_grp[start + cnt_grp] - prefix_grp[start])
    total = (2.0 * (sum_all - sum_grp).sum()).to(pos_dissim.dtype)
    n_quadruplets = 2 * (m - seg_len[pos_class]).sum()
    n_nonzero = 2 * (cnt_all - cnt_grp).sum()
    return total, n_quadruplets, n_nonzero
