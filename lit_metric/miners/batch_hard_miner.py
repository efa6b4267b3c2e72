"""Batch-hard mining (Hermans, Beyer & Leibe 2017, "In Defense of the Triplet Loss")."""

from __future__ import annotations

import torch
from torch import Tensor

from lit_metric.miners.base import Miner, MinerInputs

__all__ = ["BatchHardMiner"]


class BatchHardMiner(Miner):
    """For every anchor, its hardest positive (farthest) and hardest negative (closest): one triplet.

    Anchors without a positive or without a negative are skipped.  Ties go to the lowest index.

    Args:
        distance: a :class:`~lit_metric.distances.BaseDistance`.

    Example:
        >>> import torch
        >>> emb = torch.tensor([[0.0, 1.0], [0.0, 0.9], [1.0, 0.0], [0.7, 0.7]])
        >>> a, p, n = BatchHardMiner()(emb, torch.tensor([0, 0, 1, 1]))
        >>> a.tolist(), p.tolist(), n.tolist()
        ([0, 1, 2, 3], [1, 0, 3, 2], [3, 3, 0, 0])
    """

    def mine(self, inputs: MinerInputs) -> tuple[Tensor, Tensor, Tensor]:
        d = self.distance.to_dissimilarity(self.distance.pairwise(inputs.embeddings, inputs.ref_emb))
        pos_mask, neg_mask = inputs.masks()
        inf = torch.finfo(d.dtype).max
        hardest_pos = torch.where(pos_mask, d, torch.full_like(d, -inf)).argmax(1)
        hardest_neg = torch.where(neg_mask, d, torch.full_like(d, inf)).argmin(1)
        valid = pos_mask.any(1) & neg_mask.any(1)
        a = valid.nonzero(as_tuple=True)[0]
        return a, hardest_pos[a], hardest_neg[a]
