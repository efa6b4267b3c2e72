"""Hard quadruplet mining for the quadruplet loss (Chen et al. 2017)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from lit_metric._validation import check_choice
from lit_metric.distances import BaseDistance
from lit_metric.functional.quadruplet import Quadruplets
from lit_metric.miners.base import Miner, MinerInputs

__all__ = ["QuadrupletMiner"]

STRATEGIES = ("hard", "batch_hard")


class QuadrupletMiner(Miner):
    r"""Quadruplets ``(a, p, n1, n2)`` with the hardest negatives of the batch, as a ``Quadruplets``.

    For every anchor ``a``: ``n1`` is its closest negative, and ``n2`` the reference closest to ``n1``
    among those whose class differs from both ``a``'s and ``n1``'s (the hardest negative *pair*
    ``(n1, n2)`` of the quadruplet loss's second term, given ``n1``).  With ``strategy="hard"`` every
    positive pair ``(a, p)`` gets its anchor's ``(n1, n2)``; with ``"batch_hard"`` only the hardest
    (farthest) positive of each anchor is kept (Hermans et al.'s batch-hard, extended to quadruplets).
    Anchors without a positive, a negative or a third class are skipped.  Ties go to the lowest index.

    The output is a :class:`~lit_metric.functional.quadruplet.Quadruplets` named tuple, whose ``p``,
    ``n1``, ``n2`` index the references: :class:`~lit_metric.losses.QuadrupletLoss` only accepts this
    type, so it is never mistaken for the ``(a1, p, a2, n)`` pair format of the other losses.
    Time and memory ``O(B·N)``.

    References:
        - Chen, Chen, Zhang & Huang, "Beyond triplet loss: a deep quadruplet network for person
          re-identification", CVPR 2017 (online hard negative mining).
        - Hermans, Beyer & Leibe, "In Defense of the Triplet Loss for Person Re-Identification", 2017.

    Args:
        strategy: ``"hard"`` (every positive pair) or ``"batch_hard"`` (hardest positive per anchor).
        distance: a :class:`~lit_metric.distances.BaseDistance` (default: Euclidean on L2-normalised
            embeddings; any monotone transform, e.g. squared, mines the same quadruplets).

    Raises:
        ValueError: on an unknown ``strategy`` (the message lists the valid ones).

    Example:
        >>> import torch
        >>> from lit_metric.distances import EuclideanDistance
        >>> emb = torch.tensor([[0.0], [0.5], [2.0], [2.4], [5.0], [5.2]])  # classes 0, 0, 1, 1, 2, 2
        >>> miner = QuadrupletMiner("batch_hard", distance=EuclideanDistance(normalize=False))
        >>> q = miner(emb, torch.tensor([0, 0, 1, 1, 2, 2]))
        >>> type(q).__name__, q.a.tolist(), q.p.tolist()
        ('Quadruplets', [0, 1, 2, 3, 4, 5], [1, 0, 3, 2, 5, 4])
        >>> q.n1.tolist()  # each anchor's closest negative
        [2, 2, 1, 1, 3, 3]
        >>> q.n2.tolist()  # the reference closest to n1 among the third class
        [4, 4, 4, 4, 1, 1]
    """

    def __init__(
        self, strategy: Literal["hard", "batch_hard"] = "hard", distance: BaseDistance | None = None
    ) -> None:
        super().__init__(distance)
        self.strategy = check_choice(strategy, "strategy", STRATEGIES)

    def forward(  # type: ignore[override]
        self,
        embeddings: Tensor,
        labels: Tensor,
        ref_emb: Tensor | None = None,
        ref_labels: Tensor | None = None,
        *,
        self_index: Tensor | None = None,
    ) -> Quadruplets:
        """Mine quadruplets (see :meth:`Miner.forward <lit_metric.miners.Miner.forward>` for the arguments)."""
        return Quadruplets(*super().forward(embeddings, labels, ref_emb, ref_labels, self_index=self_index))

    def mine(self, inputs: MinerInputs) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        dist = self.distance
        d = dist.to_dissimilarity(dist.pairwise(inputs.embeddings, inputs.ref_emb))
        pos_mask, neg_mask = inputs.masks()
        big = torch.finfo(d.dtype).max
        n1 = torch.where(neg_mask, d, torch.full_like(d, big)).argmin(1)  # (B,)
        uniq, inverse = torch.unique(n1, return_inverse=True)
        d_n1 = dist.to_dissimilarity(dist.pairwise(inputs.ref_emb[uniq], inputs.ref_emb))[inverse]  # (B, N)
        ref_labels = inputs.ref_labels
        third = (ref_labels.unsqueeze(0) != inputs.labels.unsqueeze(1)) & (
            ref_labels.unsqueeze(0) != ref_labels[n1].unsqueeze(1)
        )
        n2 = torch.where(third, d_n1, torch.full_like(d_n1, big)).argmin(1)
        valid = pos_mask.any(1) & neg_mask.any(1) & third.any(1)
        if self.strategy == "batch_hard":
            a = valid.nonzero(as_tuple=True)[0]
            p = torch.where(pos_mask, d, torch.full_like(d, -big)).argmax(1)[a]
        else:
            a, p = (pos_mask & valid.unsqueeze(1)).nonzero(as_tuple=True)
        return a, p, n1[a], n2[a]

    def extra_repr(self) -> str:
        return f"strategy={self.strategy!r}"
