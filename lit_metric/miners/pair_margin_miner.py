"""Pair-margin miner: the hard positive and hard negative pairs of a batch."""

from __future__ import annotations

from torch import Tensor

from lit_metric._validation import check_positive
from lit_metric.distances import BaseDistance
from lit_metric.miners.base import Miner, MinerInputs

__all__ = ["PairMarginMiner"]


class PairMarginMiner(Miner):
    r"""Pairs ``(a1, p, a2, n)``: positives farther than ``pos_margin``, negatives closer than ``neg_margin``.

    With a distance ``d``: a positive pair is kept when ``d > pos_margin`` and a negative pair when
    ``d < neg_margin`` (strict, as in PyTorch Metric Learning's ``PairMarginMiner``); with a
    similarity ``s`` the comparisons flip (``s < pos_margin``, ``s > neg_margin``) through the
    distance object.  These are exactly the pairs with a non-zero hinge in
    :class:`~lit_metric.losses.ContrastiveLoss` with the same margins.  Pairs come in row-major order
    of the ``(B, N)`` anchor–reference matrix; self pairs are never positives.

    Args:
        pos_margin: positive pairs within this are easy and dropped (distance units).
        neg_margin: negative pairs beyond this are easy and dropped (distance units).
        distance: a :class:`~lit_metric.distances.BaseDistance` (default: Euclidean on L2-normalised
            embeddings).

    Raises:
        ValueError: if a margin is negative.
        TypeError: if a margin is not a number.

    Example:
        >>> import torch
        >>> from lit_metric.distances import EuclideanDistance
        >>> miner = PairMarginMiner(pos_margin=0.2, neg_margin=0.8, distance=EuclideanDistance(normalize=False))
        >>> emb = torch.tensor([[0.0, 0.0], [0.0, 0.5], [0.0, 0.6], [3.0, 0.0]])
        >>> a1, p, a2, n = miner(emb, torch.tensor([0, 0, 1, 1]))
        >>> a1.tolist(), p.tolist()  # the positive pair at 0.5 (both orders); (2, 3) at ≈3.06 too
        ([0, 1, 2, 3], [1, 0, 3, 2])
        >>> a2.tolist(), n.tolist()  # negatives closer than 0.8
        ([0, 1, 2, 2], [2, 2, 0, 1])
    """

    def __init__(self, pos_margin: float, neg_margin: float, distance: BaseDistance | None = None) -> None:
        super().__init__(distance)
        self.pos_margin = check_positive(pos_margin, "pos_margin", allow_zero=True)
        self.neg_margin = check_positive(neg_margin, "neg_margin", allow_zero=True)

    def mine(self, inputs: MinerInputs) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        mat = self.distance.pairwise(inputs.embeddings, inputs.ref_emb)
        pos_mask, neg_mask = inputs.masks()
        hard_pos = pos_mask & (self.distance.gap(mat, mat.new_tensor(self.pos_margin)) > 0)
        hard_neg = neg_mask & (self.distance.gap(mat.new_tensor(self.neg_margin), mat) > 0)
        a1, p = hard_pos.nonzero(as_tuple=True)
        a2, n = hard_neg.nonzero(as_tuple=True)
        return a1, p, a2, n

    def extra_repr(self) -> str:
        return f"pos_margin={self.pos_margin}, neg_margin={self.neg_margin}"
