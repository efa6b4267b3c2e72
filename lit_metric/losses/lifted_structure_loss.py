"""Lifted structured loss (Song, Xiang, Jegelka & Savarese 2016)."""

from __future__ import annotations

import torch
from torch import Tensor

from lit_metric import distributed
from lit_metric._validation import check_positive
from lit_metric.distances import BaseDistance, EuclideanDistance
from lit_metric.functional.logsumexp import masked_logsumexp, masked_max, segment_logsumexp, segment_max
from lit_metric.functional.tuples import triplets_to_pairs
from lit_metric.losses.base import LossInputs, MetricLoss, Reduction

__all__ = ["LiftedStructureLoss"]


class LiftedStructureLoss(MetricLoss):
    r"""Every positive pair against *all* negatives of both its ends (Song et al. 2016, eq. 4 and 3).

    For a positive pair ``(i, j)`` with distance ``D_ij`` and the negative pairs ``N``:

    .. math::
        J_{ij} = \log\Big(\sum_{(i,k)\in N} e^{\alpha - D_{ik}} + \sum_{(j,l)\in N} e^{\alpha - D_{jl}}\Big)
                 + D_{ij} - m_+,
        \qquad L = \frac{1}{2|P|}\sum_{(i,j)\in P} [J_{ij}]_+^2

    with ``α = neg_margin`` and ``m₊ = pos_margin`` (0 in the paper).  ``smooth=False`` is the
    non-smooth structured form of the paper's eq. 3, ``J_ij = max(max_k(α − D_ik), max_l(α − D_jl)) +
    D_ij − m₊``.  ``(i, j)`` runs over the ordered positive pairs (``J`` is symmetric, so the mean equals
    the mean over unordered pairs); ``"mean"`` is the paper's ``1/(2|P|) Σ``, i.e. the mean of
    ``½[J]₊²``.  With a similarity the margins flip through the distance object
    (``α − D`` becomes ``s − α``).

    The sum over the negatives of ``i`` only depends on ``i`` and the one over ``j`` only on ``j``, so
    both are reduced once per sample (``A_i`` over the anchor row, ``C_j`` over the reference row) and
    ``J_ij = log(e^{A_i} + e^{C_j}) + D_ij − m₊``: time and memory ``O(B·N + U·N)`` for ``U`` distinct
    positives (PyTorch Metric Learning builds a ``|P| × |N|`` tensor, ``O(B³)``).  When ``ref_emb`` is a
    separate set (e.g. gathered over ranks), the negatives of ``j`` are the references of another
    class, as in the single-process batch.

    With a pair ``indices_tuple`` ``(a1, p, a2, n)`` the positive pairs are ``(a1, p)`` and the
    negatives of ``i`` are the mined pairs ``(i, n)``; those of ``j`` are the mined pairs whose anchor
    *is* ``j`` (found through ``self_index``, i.e. when the references contain the anchors; otherwise
    only the anchor side counts).  Under DDP those pairs were mined on the rank that owns ``j``: each
    rank's per-anchor reductions are all-gathered (with gradient) so the result is the single-process one.  Triplets are split into their unique pairs.  A positive pair with no
    negative on either side has no defined ``J`` and is left out (it cannot occur without a miner
    when the batch has two classes or more).

    References:
        - Song, Xiang, Jegelka & Savarese, "Deep Metric Learning via Lifted Structured Feature
          Embedding", CVPR 2016.

    Args:
        neg_margin: the margin ``α`` of the negatives (distance units).
        pos_margin: the margin of the positives (0 in the paper).
        smooth: the smooth upper bound (eq. 4, log-sum-exp) or the hard structured max (eq. 3).
        distance: a :class:`~lit_metric.distances.BaseDistance` (default: Euclidean on L2-normalised
            embeddings, the paper's ``D``).
        reduction: ``"mean"`` (the paper), ``"nonzero_mean"`` or ``"sum"`` of ``½[J]₊²``.

    Raises:
        ValueError: if a margin is negative.
        TypeError: if a margin is not a number.

    Example:
        >>> import math, torch
        >>> loss = LiftedStructureLoss(neg_margin=1.0, distance=EuclideanDistance(normalize=False))
        >>> emb = torch.tensor([[0.0], [1.0], [3.0]])
        >>> # one positive pair at D=1; negatives of 0 at 3, of 1 at 2: J = log(e^-2 + e^-1) + 1
        >>> value = loss(emb, torch.tensor([0, 0, 1]))
        >>> math.isclose(value.item(), 0.5 * (math.log(math.exp(-2) + math.exp(-1)) + 1) ** 2, rel_tol=1e-6)
        True
    """

    def __init__(
        self,
        neg_margin: float = 1.0,
        pos_margin: float = 0.0,
        smooth: bool = True,
        distance: BaseDistance | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(reduction=reduction)
        self.neg_margin = check_positive(neg_margin, "neg_margin", allow_zero=True)
        self.pos_margin = check_positive(pos_margin, "pos_margin", allow_zero=True)
        self.smooth = smooth
        self.distance = distance if distance is not None else EuclideanDistance()

    def compute_loss(self, inputs: LossInputs) -> Tensor:
        emb, ref = inputs.embeddings, inputs.ref_emb
        mat = self.distance.pairwise(emb, ref)
        neg_slack = self.distance.gap(mat.new_tensor(self.neg_margin), mat)  # α − D_ik (B, N)
        if inputs.indices_tuple is None:
            pos_mask, neg_mask = inputs.masks()
            a, p = pos_mask.nonzero(as_tuple=True)
            anchor_side, anchor_ok = self._row_reduce(neg_slack, neg_mask)
            ref_side, ref_ok = self._ref_side(inputs, p, anchor_side, anchor_ok)
            a_val, a_ok = anchor_side[a], anchor_ok[a]
        else:
            pairs = inputs.indices_tuple
            a, p, a2, n = triplets_to_pairs(*pairs) if len(pairs) == 3 else pairs
            slack = neg_slack[a2, n]
            anchor_side, anchor_ok = self._segment_reduce(slack, a2, emb.shape[0])
            if inputs.self_index is not None and distributed.global_reduction_active():
                ref_side, ref_ok = self._gathered_ref_side(anchor_side, inputs.self_index, ref.shape[0])
                ref_side, ref_ok = ref_side[p], ref_ok[p]
            elif inputs.self_index is not None:
                ref_side, ref_ok = self._segment_reduce(slack, inputs.self_index[a2], ref.shape[0])
                ref_side, ref_ok = ref_side[p], ref_ok[p]
            else:
                ref_side = slack.new_full(p.shape, float("-inf"))
                ref_ok = torch.zeros_like(p, dtype=torch.bool)
            a_val, a_ok = anchor_side[a], anchor_ok[a]
        valid = a_ok | ref_ok
        # keep every operand finite where a side (or both) has no negative: no NaN in backward
        a_val = torch.where(a_ok, a_val, torch.where(valid, torch.full_like(a_val, float("-inf")), 0.0))
        c_val = torch.where(ref_ok, ref_side, torch.where(valid, torch.full_like(ref_side, float("-inf")), 0.0))
        neg_term = torch.logaddexp(a_val, c_val) if self.smooth else torch.maximum(a_val, c_val)
        j = neg_term + self.distance.gap(mat[a, p], mat.new_tensor(self.pos_margin))
        terms = 0.5 * torch.relu(j[valid]).pow(2)
        return self.reduce(terms) + self.zero(inputs)

    def _row_reduce(self, values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        return masked_logsumexp(values, mask, dim=1) if self.smooth else masked_max(values, mask, dim=1)

    def _segment_reduce(self, values: Tensor, segments: Tensor, num: int) -> tuple[Tensor, Tensor]:
        return segment_logsumexp(values, segments, num) if self.smooth else segment_max(values, segments, num)

    @staticmethod
    def _gathered_ref_side(anchor_side: Tensor, self_index: Tensor, num_refs: int) -> tuple[Tensor, Tensor]:
        """``C_j`` for every reference under DDP: the mined negatives of reference ``j`` are the pairs whose
        anchor is ``j``, i.e. they were mined on the rank that owns ``j``; that rank's ``A_j`` is exactly
        ``C_j``.  Gather every rank's ``A`` (with gradient, so ``j``'s owner receives it) and place it at the
        references' positions (``self_index``).  An anchor without a mined negative has ``A = -inf``, so the
        "has a negative" flags need no gather of their own; batch sizes were checked by the module's gather."""
        side = distributed.all_gather_with_grad(anchor_side)
        index = distributed.all_gather_no_grad(self_index)
        full_side = side.new_full((num_refs,), float("-inf")).index_put((index,), side)
        return full_side, full_side > float("-inf")

    def _ref_side(
        self, inputs: LossInputs, p: Tensor, anchor_side: Tensor, anchor_ok: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``C_j`` for the positives ``p``: the reduction over the negatives of reference ``j``."""
        if inputs.ref_emb is inputs.embeddings and inputs.ref_labels is inputs.labels:
            return anchor_side[p], anchor_ok[p]  # the references are the anchors: C = A
        ref, ref_labels = inputs.ref_emb, inputs.ref_labels
        if ref_labels is None:  # unreachable: masks() needed them already
            raise ValueError("Expected argument `ref_labels` together with `ref_emb`, but got None.")
        uniq, inverse = torch.unique(p, return_inverse=True)
        rows = self.distance.gap(ref.new_tensor(self.neg_margin), self.distance.pairwise(ref[uniq], ref))
        neg_mask = ref_labels[uniq].unsqueeze(1) != ref_labels.unsqueeze(0)
        side, ok = self._row_reduce(rows, neg_mask)
        return side[inverse], ok[inverse]

    def extra_repr(self) -> str:
        return (
            f"neg_margin={self.neg_margin}, pos_margin={self.pos_margin}, smooth={self.smooth}, "
            f"reduction={self.reduction!r}"
        )
