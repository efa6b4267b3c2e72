"""Quadruplet loss (Chen, Chen, Zhang & Huang 2017)."""

from __future__ import annotations

import torch
from torch import Tensor

from lit_metric._validation import check_positive
from lit_metric.distances import BaseDistance, EuclideanDistance
from lit_metric.functional.quadruplet import Quadruplets, check_quadruplets, quadruplet_pair_gap_all_sum
from lit_metric.functional.triplet import triplet_margin_all_sum
from lit_metric.losses.base import LossInputs, MetricLoss, Reduction

__all__ = ["QuadrupletLoss"]


class QuadrupletLoss(MetricLoss):
    r"""The triplet term plus a second term comparing the positive pair with a pair of two *other* classes.

    For a quadruplet ``(a, p, n1, n2)`` — ``p`` of the anchor's class, ``n1`` of another class and
    ``n2`` of a class different from both (Chen et al. 2017, eq. 4, with the paper's learned metric
    ``g`` replaced by ``distance``):

    .. math::
        L = \underbrace{[d(a,p) - d(a,n_1) + \alpha_1]_+}_{\text{triplet term}}
          + \underbrace{[d(a,p) - d(n_2,n_1) + \alpha_2]_+}_{\text{pair term}}

    The paper writes ``g²``: the default distance is the squared Euclidean distance of the
    L2-normalised embeddings (values in ``[0, 4]``).  The second term has the weaker margin
    (``margin_b < margin_a`` in the paper): it pushes the intra-class distance below inter-class
    distances that do not involve the anchor, which the triplet term alone leaves free.  The two
    terms are sums over different index sets (triplets and quadruplets), so each is reduced over its
    own set and the two are added (``"mean"``: mean triplet term + mean pair term).

    **Index tuples.** The loss only accepts a :class:`~lit_metric.functional.quadruplet.Quadruplets`
    (what :class:`~lit_metric.miners.QuadrupletMiner` returns), never a plain 4-tuple, which means
    ``(a1, p, a2, n)`` *pairs* everywhere else in the library: anything else raises a ``TypeError``.
    With quadruplets, the triplet term runs over their ``(a, p, n1)`` and the pair term over them.
    Without ``indices_tuple`` both terms run over *every* valid triplet / quadruplet of the batch
    (``n2`` ranging over every reference of a third class, ordered pairs ``(n1, n2)``), computed
    exactly by sorting and prefix sums, never enumerated: time ``O(N² log N)``, memory ``O(B·N + N²)``.

    References:
        - Chen, Chen, Zhang & Huang, "Beyond triplet loss: a deep quadruplet network for person
          re-identification", CVPR 2017.

    Args:
        margin_a: ``α₁``, the margin of the triplet term (distance units).
        margin_b: ``α₂``, the margin of the pair term (distance units).
        distance: a :class:`~lit_metric.distances.BaseDistance`; default
            ``EuclideanDistance(squared=True)`` (the paper's squared metric).
        reduction: ``"mean"``, ``"nonzero_mean"`` or ``"sum"``, applied to each term separately.

    Raises:
        ValueError: if a margin is negative; on malformed quadruplets (see ``forward``).
        TypeError: if a margin is not a number, or ``indices_tuple`` is not a ``Quadruplets``.

    Example:
        >>> import torch
        >>> from lit_metric.distances import EuclideanDistance
        >>> from lit_metric.functional.quadruplet import Quadruplets
        >>> loss = QuadrupletLoss(margin_a=1.0, margin_b=0.5, distance=EuclideanDistance(normalize=False))
        >>> emb = torch.tensor([[0.0], [1.0], [1.5], [2.0]])  # classes 0, 0, 1, 2
        >>> q = Quadruplets(*(torch.tensor([i]) for i in (0, 1, 2, 3)))
        >>> # triplet term [1 − 1.5 + 1]₊ = 0.5, pair term [1 − 0.5 + 0.5]₊ = 1
        >>> loss(emb, torch.tensor([0, 0, 1, 2]), q)
        tensor(1.5000)
    """

    def __init__(
        self,
        margin_a: float = 1.0,
        margin_b: float = 0.5,
        distance: BaseDistance | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(reduction=reduction)
        self.margin_a = check_positive(margin_a, "margin_a", allow_zero=True)
        self.margin_b = check_positive(margin_b, "margin_b", allow_zero=True)
        self.distance = distance if distance is not None else EuclideanDistance(squared=True)

    def prepare(
        self,
        embeddings: Tensor,
        labels: Tensor | None,
        indices_tuple: tuple[Tensor, ...] | None,
        ref_emb: Tensor | None,
        ref_labels: Tensor | None,
        self_index: Tensor | None,
    ) -> LossInputs:
        """As :meth:`MetricLoss.prepare`, but ``indices_tuple`` must be a ``Quadruplets`` (or None)."""
        inputs = super().prepare(embeddings, labels, None, ref_emb, ref_labels, self_index)
        if indices_tuple is None:
            return inputs
        quadruplets = check_quadruplets(indices_tuple, inputs.embeddings.shape[0], inputs.ref_emb.shape[0])
        return inputs._replace(indices_tuple=quadruplets)

    def compute_loss(self, inputs: LossInputs) -> Tensor:
        if isinstance(inputs.indices_tuple, Quadruplets):
            return self._mined(inputs, inputs.indices_tuple)
        return self._all(inputs)

    def _mined(self, inputs: LossInputs, q: Quadruplets) -> Tensor:
        emb, ref, dist = inputs.embeddings, inputs.ref_emb, self.distance
        d_ap = dist.rowwise(emb[q.a], ref[q.p])
        triplet = torch.relu(dist.gap(d_ap, dist.rowwise(emb[q.a], ref[q.n1])) + self.margin_a)
        pair = torch.relu(dist.gap(d_ap, dist.rowwise(ref[q.n2], ref[q.n1])) + self.margin_b)
        return self.reduce(triplet) + self.reduce(pair) + self.zero(inputs)

    def _all(self, inputs: LossInputs) -> Tensor:
        ref_labels = inputs.ref_labels
        if ref_labels is None:  # labels are required: prepare() has checked
            raise ValueError(f"Expected argument `labels` for {type(self).__name__}, but got None.")
        dissim = self.distance.to_dissimilarity(self.distance.pairwise(inputs.embeddings, inputs.ref_emb))
        pos_mask, neg_mask = inputs.masks()
        total_t, count_t, nonzero_t = triplet_margin_all_sum(dissim, pos_mask, neg_mask, self.margin_a)
        if inputs.ref_emb is inputs.embeddings:
            ref_dissim = dissim
        else:
            ref_dissim = self.distance.to_dissimilarity(self.distance.pairwise(inputs.ref_emb, inputs.ref_emb))
        _, ref_class = torch.unique(ref_labels, return_inverse=True)
        a, p = pos_mask.nonzero(as_tuple=True)
        total_q, count_q, nonzero_q = quadruplet_pair_gap_all_sum(
            dissim[a, p], ref_class[p], ref_dissim, ref_class, self.margin_b
        )
        loss = self.reduce_total(total_t, count_t, nonzero_t) + self.reduce_total(total_q, count_q, nonzero_q)
        return loss + self.zero(inputs)

    def extra_repr(self) -> str:
        return f"margin_a={self.margin_a}, margin_b={self.margin_b}, reduction={self.reduction!r}"
