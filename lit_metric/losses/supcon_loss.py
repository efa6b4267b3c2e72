"""Supervised contrastive loss over a labelled batch (Khosla et al. 2020), as a :class:`MetricLoss`."""

from __future__ import annotations

import torch
from torch import Tensor

from lit_metric._validation import check_positive
from lit_metric.distances import BaseDistance, CosineSimilarity
from lit_metric.functional.info_nce import contrastive_logits, supcon_sum
from lit_metric.functional.tuples import triplets_to_pairs
from lit_metric.losses.base import LossInputs, MetricLoss, Reduction

__all__ = ["SupConLoss"]


class SupConLoss(MetricLoss):
    r"""SupCon's :math:`\mathcal{L}^{sup}_{out}` over one labelled view: every other same-class sample is a positive.

    For anchor ``i`` with positives ``P(i)`` (same label, itself excluded) and candidates ``A(i)`` (every
    reference but itself), with logits ``l_ij = s(i, j) / τ``:

    .. math::
        L_i = -\frac{1}{|P(i)|} \sum_{p \in P(i)} \log \frac{e^{l_{ip}}}{\sum_{a \in A(i)} e^{l_{ia}}},
        \qquad L = \operatorname{mean}_{i:\,|P(i)| > 0} L_i

    On a P×K batch this is a softmax classifier over the batch (like prototypical networks' episodes, with
    the K−1 same-class samples as targets) and it is what makes few-shot recognition work well: every anchor
    is pushed away from *all* negatives at once, weighted by how close they are.  With one view of each
    instance this is also PyTorch Metric Learning's ``SupConLoss``.  :class:`~lit_metric.losses.InfoNCELoss`
    is the two-view (SimCLR / SupCon with augmented pairs) form for :class:`~lit_metric.SelfSupervisedModule`.

    With a pair ``indices_tuple`` ``(a1, p, a2, n)`` (or triplets, split into pairs) only the mined pairs
    count: positives ``(a1, p)``, and the denominator of anchor ``i`` runs over its mined positives and
    negatives.  Anchors without a positive are left out of the mean (a zero loss, never NaN, when there is
    none at all).  Under DDP pass the gathered references and ``self_index`` (the modules do).

    References:
        - Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020.

    Args:
        temperature: softmax temperature ``τ > 0`` (0.1 is a good start for cosine similarity).
        distance: the similarity (default cosine; a distance enters as ``−d``).
        reduction: ``"mean"`` over anchors with a positive, ``"nonzero_mean"`` (the same for this loss: each
            such anchor's term is positive) or ``"sum"``.

    Raises:
        ValueError: if ``temperature`` is not positive.

    Example:
        >>> import math, torch
        >>> emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> loss = SupConLoss(temperature=1.0)
        >>> # anchors 0 and 1: positive at cosine 1, negative at 0 -> −log(e / (e + 1)); anchor 2 has no positive
        >>> math.isclose(loss(emb, torch.tensor([0, 0, 1])).item(), math.log1p(math.exp(-1)), rel_tol=1e-6)
        True
    """

    def __init__(
        self, temperature: float = 0.1, distance: BaseDistance | None = None, reduction: Reduction = "mean"
    ) -> None:
        super().__init__(reduction=reduction)
        self.temperature = check_positive(temperature, "temperature")
        self.distance = distance if distance is not None else CosineSimilarity()

    def compute_loss(self, inputs: LossInputs) -> Tensor:
        emb, ref = inputs.embeddings, inputs.ref_emb
        similarity = -self.distance.to_dissimilarity(self.distance.pairwise(emb, ref))
        self_cols = inputs.self_index
        logits = contrastive_logits(similarity, self.temperature, self_cols)
        pos_mask, neg_mask = inputs.masks()
        if inputs.indices_tuple is not None:
            pairs = inputs.indices_tuple
            a1, p, a2, n = triplets_to_pairs(*pairs) if len(pairs) == 3 else pairs
            mined_pos = torch.zeros_like(pos_mask)
            mined_pos[a1, p] = True
            mined_neg = torch.zeros_like(neg_mask)
            mined_neg[a2, n] = True
            pos_mask, neg_mask = pos_mask & mined_pos, neg_mask & mined_neg
            keep = pos_mask | neg_mask
            logits = logits.masked_fill(~keep, float("-inf"))
        total, count = supcon_sum(logits, pos_mask)
        return self.reduce_total(total, count, count) + self.zero(inputs)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, reduction={self.reduction!r}"
