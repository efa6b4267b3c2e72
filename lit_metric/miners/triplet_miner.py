"""Triplet miner with the classic easy / semi-hard / hard / all strategies."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from lit_metric._validation import check_choice, check_positive
from lit_metric.distances import BaseDistance
from lit_metric.functional.tuples import interval_triplets
from lit_metric.miners.base import Miner, MinerInputs

__all__ = ["TripletMiner"]

STRATEGIES = ("all", "hard", "semihard", "easy")


class TripletMiner(Miner):
    r"""Triplets ``(a, p, n)`` selected by how the negative compares with the positive.

    With ``d`` the dissimilarity (a similarity is negated) and ``m`` the margin:

    ======== =====================================
    all      every valid triplet
    hard     ``d_an <= d_ap``
    semihard ``d_ap < d_an <= d_ap + m`` (Schroff et al. 2015)
    easy     ``d_an > d_ap + m``
    ======== =====================================

    PyTorch Metric Learning's ``type_of_triplets="all"`` keeps only margin violators, i.e. our
    ``hard`` ∪ ``semihard``.  Each anchor's negatives are sorted once and the bounds found by
    binary search: ``O(B·N·log N + T)`` time and memory for ``T`` triplets (no B×N×N tensor).

    Args:
        strategy: one of ``"all"``, ``"hard"``, ``"semihard"``, ``"easy"``.
        margin: the margin ``m`` in the distance's units.
        distance: a :class:`~lit_metric.distances.BaseDistance`.

    Raises:
        ValueError: on an unknown ``strategy`` (the message lists the valid ones) or a negative margin.

    Example:
        >>> import torch
        >>> miner = TripletMiner("all")
        >>> a, p, n = miner(torch.randn(4, 8), torch.tensor([0, 0, 1, 1]))
        >>> len(a)  # 4 anchors × 1 positive × 2 negatives
        8
    """

    def __init__(
        self,
        strategy: Literal["all", "hard", "semihard", "easy"] = "semihard",
        margin: float = 0.2,
        distance: BaseDistance | None = None,
    ) -> None:
        super().__init__(distance)
        self.strategy = check_choice(strategy, "strategy", STRATEGIES)
        self.margin = check_positive(margin, "margin", allow_zero=True)

    def mine(self, inputs: MinerInputs) -> tuple[Tensor, Tensor, Tensor]:
        d = self.distance.to_dissimilarity(self.distance.pairwise(inputs.embeddings, inputs.ref_emb))
        pos_mask, neg_mask = inputs.masks()
        if self.strategy == "all":
            lower, upper, lower_incl, upper_incl = None, None, False, True
        elif self.strategy == "hard":
            lower, upper, lower_incl, upper_incl = None, d, False, True
        elif self.strategy == "semihard":
            lower, upper, lower_incl, upper_incl = d, d + self.margin, False, True
        else:
            lower, upper, lower_incl, upper_incl = d + self.margin, None, False, True
        return interval_triplets(d, d, pos_mask, neg_mask, lower, upper, lower_incl, upper_incl)

    def extra_repr(self) -> str:
        return f"strategy={self.strategy!r}, margin={self.margin}"
