"""Contrastive (pair) loss (Chopra et al. 2005; Hadsell, Chopra & LeCun 2006)."""

from __future__ import annotations

import torch
from torch import Tensor

from lit_metric._validation import check_positive
from lit_metric.distances import BaseDistance, EuclideanDistance
from lit_metric.functional.tuples import triplets_to_pairs
from lit_metric.losses.base import LossInputs, MetricLoss, Reduction

__all__ = ["ContrastiveLoss"]


def _same_label_entries(labels: Tensor, ref_labels: Tensor) -> tuple[Tensor, Tensor]:
    """Row-major ``(rows, cols)`` of the entries with ``labels[row] == ref_labels[col]``, by sorting the
    reference labels (``O(N log N + S)`` for ``S`` entries; no (B, N) mask)."""
    sorted_ref, order = ref_labels.sort(stable=True)
    lo = torch.searchsorted(sorted_ref, labels, right=False)
    counts = torch.searchsorted(sorted_ref, labels, right=True) - lo
    total = int(counts.sum())
    rows = torch.repeat_interleave(torch.arange(labels.shape[0], device=labels.device), counts, output_size=total)
    starts = torch.repeat_interleave(lo - (torch.cumsum(counts, 0) - counts), counts, output_size=total)
    return rows, order[starts + torch.arange(total, device=labels.device)]


class ContrastiveLoss(MetricLoss):
    r"""Pull positive pairs within ``pos_margin``, push negative pairs beyond ``neg_margin``.

    For a distance ``d`` the per-pair terms are

    .. math::
        \ell^+ = [d - m_+]_+ \qquad \ell^- = [m_- - d]_+

    and with ``squared=True`` Hadsell et al.'s form ``½[d − m₊]₊²`` / ``½[m₋ − d]₊²`` (with the
    default ``pos_margin=0`` the positive term is ``½d²``).  With a similarity the comparisons flip
    through the distance object (``[m₊ − s]₊`` and ``[s − m₋]₊``).

    The positive and the negative terms are reduced *separately* and added, so that the (far more
    numerous) negative pairs do not drown the positives: ``"mean"`` gives
    ``mean(ℓ⁺) + mean(ℓ⁻)``, ``"nonzero_mean"`` averages each over its non-zero terms (PML's
    ``ContrastiveLoss`` default, ``AvgNonZeroReducer``), ``"sum"`` gives ``Σℓ⁺ + Σℓ⁻`` (the paper's
    sum).  Without ``indices_tuple`` every (ordered) positive and negative pair of the batch is used;
    with ``(a1, p, a2, n)`` pairs (e.g. from :class:`~lit_metric.miners.PairMarginMiner`) only
    those; triplets ``(a, p, n)`` are split into their unique positive and negative pairs.
    Time and memory ``O(B·N)``.

    References:
        - Chopra, Hadsell & LeCun, "Learning a Similarity Metric Discriminatively, with Application to
          Face Verification", CVPR 2005.
        - Hadsell, Chopra & LeCun, "Dimensionality Reduction by Learning an Invariant Mapping", CVPR 2006.

    Args:
        pos_margin: positive pairs closer than this cost nothing (distance units).
        neg_margin: negative pairs farther than this cost nothing (distance units).
        distance: a :class:`~lit_metric.distances.BaseDistance` (default: Euclidean on L2-normalised
            embeddings).
        squared: use Hadsell et al.'s halved squared hinge instead of the plain hinge.
        reduction: ``"mean"``, ``"nonzero_mean"`` or ``"sum"``, applied to positives and negatives
            separately (see above).

    Raises:
        ValueError: if a margin is negative.
        TypeError: if a margin is not a number.

    Example:
        >>> import torch
        >>> loss = ContrastiveLoss(neg_margin=1.0, distance=EuclideanDistance(normalize=False))
        >>> emb = torch.tensor([[0.0, 0.0], [0.0, 0.5], [0.0, 0.8]])
        >>> # positive pair at 0.5 (both orders), negative pairs at 0.8 and 0.3
        >>> loss(emb, torch.tensor([0, 0, 1]))
        tensor(0.9500)
    """

    def __init__(
        self,
        pos_margin: float = 0.0,
        neg_margin: float = 1.0,
        distance: BaseDistance | None = None,
        squared: bool = False,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(reduction=reduction)
        self.pos_margin = check_positive(pos_margin, "pos_margin", allow_zero=True)
        self.neg_margin = check_positive(neg_margin, "neg_margin", allow_zero=True)
        self.distance = distance if distance is not None else EuclideanDistance()
        self.squared = squared

    def _hinge(self, x: Tensor) -> Tensor:
        x = torch.relu(x)
        return 0.5 * x * x if self.squared else x

    def pos_terms(self, values: Tensor) -> Tensor:
        """Per-pair loss of positive pairs from their distance/similarity values."""
        return self._hinge(self.distance.gap(values, values.new_tensor(self.pos_margin)))

    def neg_terms(self, values: Tensor) -> Tensor:
        """Per-pair loss of negative pairs from their distance/similarity values."""
        return self._hinge(self.distance.gap(values.new_tensor(self.neg_margin), values))

    def compute_loss(self, inputs: LossInputs) -> Tensor:
        mat = self.distance.pairwise(inputs.embeddings, inputs.ref_emb)
        if inputs.indices_tuple is None:
            loss = self._all_pairs(inputs, mat)
        else:
            pairs = inputs.indices_tuple
            a1, p, a2, n = triplets_to_pairs(*pairs) if len(pairs) == 3 else pairs
            # both reductions are always issued, in this order (the distributed protocol needs it)
            loss = self.reduce(self.pos_terms(mat[a1, p])) + self.reduce(self.neg_terms(mat[a2, n]))
        return (loss + self.zero(inputs)).to(inputs.embeddings.dtype)

    def _all_pairs(self, inputs: LossInputs, mat: Tensor) -> Tensor:
        """Every pair, in few passes over the (B, N) matrix: the few same-label entries (positives and self
        pairs) are gathered; the negative term is summed over the whole matrix minus those entries."""
        labels, ref_labels = inputs.labels, inputs.ref_labels
        if labels is None or ref_labels is None:  # prepare() has checked
            raise ValueError(f"Expected argument `labels` for {type(self).__name__}, but got None.")
        acc = torch.promote_types(mat.dtype, torch.float32)  # sums of many half-precision terms overflow
        rows, cols = _same_label_entries(labels, ref_labels)
        same_values = mat[rows, cols]
        if inputs.self_index is not None:
            not_self = cols != inputs.self_index[rows]
            pos = self.reduce(self.pos_terms(same_values[not_self]).to(acc))
        else:
            pos = self.reduce(self.pos_terms(same_values).to(acc))
        neg_all, neg_same = self.neg_terms(mat), self.neg_terms(same_values)
        total = neg_all.sum(dtype=acc) - neg_same.sum(dtype=acc)
        count = mat.numel() - rows.numel()
        nonzero = (
            torch.count_nonzero(neg_all) - torch.count_nonzero(neg_same) if self.reduction == "nonzero_mean" else count
        )
        return pos + self.reduce_total(total, count, nonzero)

    def extra_repr(self) -> str:
        return (
            f"pos_margin={self.pos_margin}, neg_margin={self.neg_margin}, squared={self.squared}, "
            f"reduction={self.reduction!r}"
        )
