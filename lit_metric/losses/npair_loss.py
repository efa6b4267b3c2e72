"""Multi-class N-pair loss (Sohn 2016)."""

from __future__ import annotations

import torch
from torch import Tensor

from lit_metric import distributed
from lit_metric._validation import check_positive
from lit_metric.distances import BaseDistance, DotProductSimilarity
from lit_metric.functional.tuples import triplets_to_pairs
from lit_metric.losses.base import LossInputs, MetricLoss, Reduction

__all__ = ["NPairLoss"]


def _first_two_per_class(labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For each class of ``labels`` (N,): its first and second position (second = -1 if none), and the class."""
    sorted_labels, order = torch.sort(labels, stable=True)
    classes, counts = torch.unique_consecutive(sorted_labels, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    first = order[starts]
    second = torch.where(counts > 1, order[(starts + 1).clamp_max(labels.shape[0] - 1)], -1)
    return first, second, classes


class NPairLoss(MetricLoss):
    r"""Sohn's multi-class N-pair loss (N-pair-mc) with its L2 embedding regulariser.

    From the batch, each class contributes one pair ``(x_c, x_c⁺)``: its first sample as the anchor
    and its second as the positive (classes with a single sample take no part).  Every anchor is
    classified among all the positives by a softmax over the similarities, and the embeddings'
    squared norms are penalised:

    .. math::
        L = \frac{1}{N}\sum_{c} \Big[\log\Big(1 + \sum_{c' \ne c} e^{f_c^\top f_{c'}^+ - f_c^\top f_c^+}\Big)
            + \lambda\,(\lVert f_c\rVert^2 + \lVert f_c^+\rVert^2)\Big]

    with ``λ = l2_reg`` (the regulariser keeps the unnormalised inner products from growing without
    bound; the paper's embeddings are not L2-normalised).  ``distance`` gives the logits
    (``f_a·f_p`` by default; a distance ``d`` gives ``−d``).  With separate references
    (``ref_emb``, e.g. gathered from all ranks) the pairs are chosen among the *references* (so every
    rank sees the same positives as the single process) and a local anchor takes part when it is its
    class's first reference (through ``self_index``); without ``self_index`` the anchor is the first
    local sample of the class and the positive the first reference of the class.  With an
    ``indices_tuple``, one pair ``(a1, p)`` per anchor class is used — that of the class's lowest-index
    anchor, its first pair in tuple order (PyTorch Metric Learning's ``NPairsLoss`` takes the first in
    tuple order: the same pair for miners that list tuples anchor by anchor, as ours do) — and the
    softmax runs over those pairs' positives.  Under DDP the choice is made over all ranks' tuples.

    TensorFlow's ``npairs_loss(reg_lambda=λ_tf)`` penalises ``λ_tf/4 · (mean‖f‖² + mean‖f⁺‖²)``:
    it equals ``l2_reg = λ_tf / 4``.

    References:
        - Sohn, "Improved Deep Metric Learning with Multi-class N-pair Loss Objective", NeurIPS 2016.

    Args:
        l2_reg: weight ``λ`` of the squared-norm regulariser (0 disables it).
        distance: the measure giving the logits (default :class:`~lit_metric.distances.DotProductSimilarity`).
        reduction: ``"mean"`` (the paper), ``"nonzero_mean"`` or ``"sum"`` over the pairs.

    Raises:
        ValueError: if ``l2_reg`` is negative.
        TypeError: if ``l2_reg`` is not a number.

    Example:
        >>> import math, torch
        >>> emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
        >>> loss = NPairLoss(l2_reg=0.0)
        >>> # each anchor: logit 1 for its positive, 0 for the other: −log(e / (e + 1))
        >>> math.isclose(loss(emb, torch.tensor([0, 0, 1, 1])).item(), math.log1p(math.exp(-1)), rel_tol=1e-6)
        True
    """

    def __init__(
        self, l2_reg: float = 0.02, distance: BaseDistance | None = None, reduction: Reduction = "mean"
    ) -> None:
        super().__init__(reduction=reduction)
        self.l2_reg = check_positive(l2_reg, "l2_reg", allow_zero=True)
        self.distance = distance if distance is not None else DotProductSimilarity()

    def select_pairs(self, inputs: LossInputs) -> tuple[Tensor, Tensor, Tensor]:
        """``(anchors, positives, target)``: anchor rows, the candidate positives (reference rows) and,
        per anchor, the column of its own positive among the candidates."""
        labels, ref_labels = inputs.labels, inputs.ref_labels
        if labels is None or ref_labels is None:  # prepare() has checked
            raise ValueError(f"Expected argument `labels` for {type(self).__name__}, but got None.")
        device = labels.device
        if inputs.indices_tuple is not None:
            return self._select_mined(inputs)
        first, second, classes = _first_two_per_class(ref_labels)
        if inputs.self_index is not None:
            has_pair = second >= 0
            candidates, anchor_ref = second[has_pair], first[has_pair]
            # local anchors: those whose own reference row is a class's first occurrence
            col_of_ref = torch.full((ref_labels.shape[0],), -1, dtype=torch.long, device=device)
            col_of_ref[anchor_ref] = torch.arange(anchor_ref.numel(), device=device)
            col = col_of_ref[inputs.self_index]
            anchors = (col >= 0).nonzero(as_tuple=True)[0]
            return anchors, candidates, col[anchors]
        # separate references: the anchor is the first local sample of a class present among them
        local_first, _, local_classes = _first_two_per_class(labels)
        pos = torch.searchsorted(classes, local_classes).clamp_max(classes.numel() - 1)
        present = classes[pos] == local_classes if classes.numel() else torch.zeros_like(local_classes, dtype=torch.bool)
        return local_first[present], first, pos[present]

    def _select_mined(self, inputs: LossInputs) -> tuple[Tensor, Tensor, Tensor]:
        """Per anchor class, the pair ``(a1, p)`` of the class's lowest-index anchor (the first among that
        anchor's pairs in tuple order).  Under DDP the choice is made over every rank's tuples (all-gathered
        by reference position), so each rank keeps the chosen pairs whose anchor it owns and the softmax runs
        over all chosen positives: the single-process selection."""
        labels, ref_labels = inputs.labels, inputs.ref_labels
        assert labels is not None and ref_labels is not None and inputs.indices_tuple is not None
        pairs = inputs.indices_tuple
        a, p = (triplets_to_pairs(*pairs) if len(pairs) == 3 else pairs)[:2]
        gathered = inputs.self_index is not None and distributed.global_reduction_active()
        if gathered:
            assert inputs.self_index is not None
            key, p = distributed.all_gather_uneven(torch.stack([inputs.self_index[a], p], dim=1)).unbind(1)
            key_labels = ref_labels[key]
        else:
            key, key_labels = a, labels[a]
        if key.numel() == 0:
            return a, p, a
        order = torch.sort(key, stable=True)[1]  # lowest anchor first, tuple order among its pairs
        first = order[_first_two_per_class(key_labels[order])[0]]
        chosen_a, chosen_p = key[first], p[first]
        target = torch.arange(first.numel(), device=labels.device)
        if not gathered:
            return chosen_a, chosen_p, target
        assert inputs.self_index is not None
        local_of_ref = torch.full((ref_labels.shape[0],), -1, dtype=torch.long, device=labels.device)
        local_of_ref[inputs.self_index] = torch.arange(labels.shape[0], device=labels.device)
        local = local_of_ref[chosen_a]
        mine = local >= 0
        return local[mine], chosen_p, target[mine]

    def compute_loss(self, inputs: LossInputs) -> Tensor:
        anchors, candidates, target = self.select_pairs(inputs)
        x, ref = inputs.embeddings[anchors], inputs.ref_emb[candidates]
        logits = -self.distance.to_dissimilarity(self.distance.pairwise(x, ref))
        terms = torch.nn.functional.cross_entropy(logits, target, reduction="none")
        if self.l2_reg > 0:
            terms = terms + self.l2_reg * (x.pow(2).sum(1) + ref[target].pow(2).sum(1))
        return self.reduce(terms) + self.zero(inputs)

    def extra_repr(self) -> str:
        return f"l2_reg={self.l2_reg}, reduction={self.reduction!r}"
