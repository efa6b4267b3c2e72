"""Triplet margin loss (Weinberger & Saul 2009; Schroff et al. 2015, FaceNet)."""

from __future__ import annotations

import torch
from torch import Tensor

from lit_metric._validation import check_positive
from lit_metric.distances import BaseDistance, EuclideanDistance
from lit_metric.functional.triplet import triplet_margin_all_sum
from lit_metric.functional.tuples import pairs_to_triplets
from lit_metric.losses.base import LossInputs, MetricLoss, Reduction

__all__ = ["TripletMarginLoss"]


class TripletMarginLoss(MetricLoss):
    r"""``max(0, d(a, p) − d(a, n) + margin)`` over triplets.

    References:
        - Weinberger & Saul, "Distance Metric Learning for Large Margin Nearest Neighbor
          Classification", JMLR 2009.
        - Schroff et al., "FaceNet: A Unified Embedding for Face Recognition and Clustering", CVPR 2015.
        - Balntas et al., "Learning local feature descriptors with triplets and shallow convolutional
          neural networks", BMVC 2016 (``swap``).

    With a similarity (e.g. :class:`~lit_metric.distances.CosineSimilarity`) the term is
    ``max(0, s(a, n) − s(a, p) + margin)``.  FaceNet's loss is
    ``TripletMarginLoss(margin=0.2, distance=EuclideanDistance(squared=True), reduction="mean")``.

    Without ``indices_tuple`` every valid triplet of the batch is used, computed by sorting (time
    ``O(B·N·log N)``, memory ``O(B·N)``; no B×B×B tensor) unless ``swap`` or ``smooth`` need the
    explicit triplets, in which case anchors are processed in chunks of bounded memory.

    Args:
        margin: the margin, in the distance's units.
        distance: a :class:`~lit_metric.distances.BaseDistance`.
        reduction: ``"mean"`` over all triplets, ``"nonzero_mean"`` over triplets with a positive
            term (PML's default), or ``"sum"``.
        swap: use ``min(d(a, n), d(p, n))`` as the negative distance (distance swap).
        smooth: use the soft-margin ``log(1 + exp(d(a, p) − d(a, n) + margin))`` instead of the hinge.
        chunk_elements: memory bound (elements) of one chunk of explicit triplets.

    Example:
        >>> import torch
        >>> loss = TripletMarginLoss(margin=0.2)
        >>> emb = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
        >>> loss(emb, torch.tensor([0, 0, 1])).round(decimals=4)
        tensor(0.)
    """

    def __init__(
        self,
        margin: float = 0.2,
        distance: BaseDistance | None = None,
        reduction: Reduction = "mean",
        swap: bool = False,
        smooth: bool = False,
        chunk_elements: int = 2**22,
    ) -> None:
        super().__init__(reduction=reduction)
        self.margin = check_positive(margin, "margin", allow_zero=True)
        self.distance = distance if distance is not None else EuclideanDistance()
        self.swap = swap
        self.smooth = smooth
        self.chunk_elements = chunk_elements

    def _terms(self, d_ap: Tensor, d_an: Tensor) -> Tensor:
        x = self.distance.gap(d_ap, d_an) + self.margin
        return torch.nn.functional.softplus(x) if self.smooth else torch.relu(x)

    def compute_loss(self, inputs: LossInputs) -> Tensor:
        emb, ref = inputs.embeddings, inputs.ref_emb
        mat = self.distance.pairwise(emb, ref)
        if inputs.indices_tuple is not None:
            a, p, n = inputs.indices_tuple if len(inputs.indices_tuple) == 3 else pairs_to_triplets(*inputs.indices_tuple)
            if a.numel() == 0:
                return self.zero(inputs)
            return self.reduce(self._triplet_terms(mat, ref, a, p, n))
        pos_mask, neg_mask = inputs.masks()
        if not self.swap and not self.smooth:
            total, count, nonzero = triplet_margin_all_sum(
                self.distance.to_dissimilarity(mat), pos_mask, neg_mask, self.margin
            )
            return self.reduce_total(total + self.zero(inputs), count, nonzero)
        return self._chunked_all(mat, ref, pos_mask, neg_mask, inputs)

    def _triplet_terms(self, mat: Tensor, ref: Tensor, a: Tensor, p: Tensor, n: Tensor) -> Tensor:
        flat, n_ref = mat.reshape(-1), mat.shape[1]  # 1-D gathers are much cheaper than 2-index ones
        d_ap, d_an = flat[a * n_ref + p], flat[a * n_ref + n]
        if self.swap:
            d_pn = self.distance.rowwise(ref[p], ref[n])
            # the negative side is the *closer* of (a, n) and (p, n)
            d_an = torch.where(self.distance.gap(d_pn, d_an) < 0, d_pn, d_an)
        return self._terms(d_ap, d_an)

    def _chunked_all(self, mat: Tensor, ref: Tensor, pos_mask: Tensor, neg_mask: Tensor, inputs: LossInputs) -> Tensor:
        b, n_ref = mat.shape
        step = max(1, self.chunk_elements // max(1, n_ref * n_ref))
        total = self.zero(inputs)
        count = torch.zeros((), dtype=torch.long, device=mat.device)
        nonzero = torch.zeros((), dtype=torch.long, device=mat.device)
        for start in range(0, b, step):
            sl = slice(start, start + step)
            valid = pos_mask[sl].unsqueeze(2) & neg_mask[sl].unsqueeze(1)
            a, p, n = valid.nonzero(as_tuple=True)
            terms = self._triplet_terms(mat, ref, a + start, p, n)
            total = total + terms.sum()
            count += terms.numel()
            nonzero += (terms > 0).sum()
        return self.reduce_total(total, count, nonzero)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, reduction={self.reduction!r}, swap={self.swap}, smooth={self.smooth}"
