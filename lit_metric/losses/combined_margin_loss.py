"""Combined margin loss: SphereFace, ArcFace and CosFace margins in one target logit (Deng et al. 2019)."""

from __future__ import annotations

import math

from torch import Tensor

from lit_metric.losses._margin_softmax import MarginSoftmaxLoss, check_number, margin_target_cosine
from lit_metric.losses.base import Reduction

__all__ = ["CombinedMarginLoss"]


class CombinedMarginLoss(MarginSoftmaxLoss):
    r"""Cross-entropy over ``s·cos θ_c`` with the target logit ``s·(cos(m1·θ_y + m2) − m3)``.

    References:
        - Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition", CVPR 2019
          (section 3.3, the combined margin).

    ``m1`` is SphereFace's multiplicative angular margin, ``m2`` ArcFace's additive angular margin
    (radians), ``m3`` CosFace's additive cosine margin; ``weight`` ``(C, D)`` is the learned class matrix
    (L2-normalised in the forward).  Where ``m1·θ + m2`` exceeds π the target logit keeps decreasing by
    the standard continuation of each family, so the loss reduces exactly to the three others:

    * ``m1 = 1``: ``cos(θ + m2) − m3`` while ``θ + m2 ≤ π``, else ArcFace's ``cos θ − m2·sin m2 − m3``.
      ``CombinedMarginLoss(m2=m)`` is :class:`~lit_metric.losses.ArcFaceLoss` ``(margin=m)`` and
      ``CombinedMarginLoss(m3=m)`` is :class:`~lit_metric.losses.CosFaceLoss` ``(margin=m)``.
    * ``m1 > 1``: SphereFace's ``(−1)^k cos(m1·θ + m2) − 2k − m3``, ``k = ⌊(m1·θ + m2)/π⌋``.
      ``CombinedMarginLoss(m1=m, scale=s)`` is :class:`~lit_metric.losses.SphereFaceLoss`
      ``(margin=m, scale=s)``.

    ``indices_tuple``: the distinct anchors of a miner's tuples are the samples that contribute (each
    once); ``ref_emb``/``ref_labels`` are ignored (no gather needed under DDP: ``weight`` is a parameter
    synchronised by DDP; the mean over samples still divides by the global count).

    Args:
        num_classes: number of classes C (labels must lie in ``[0, C)``).
        embedding_dim: embedding size D.
        m1: multiplicative angular margin, ``>= 1`` (need not be an integer).
        m2: additive angular margin in radians, in ``[0, π)``.
        m3: additive cosine margin.
        scale: logit scale s.
        reduction: ``"mean"`` over samples, ``"sum"``, or ``"nonzero_mean"``.

    Raises:
        ValueError: if ``m1 < 1``, ``m2`` is not in ``[0, π)``, ``scale <= 0``, labels are outside
            ``[0, num_classes)`` or the embeddings do not have ``embedding_dim`` columns.

    Example:
        >>> import torch
        >>> loss = CombinedMarginLoss(num_classes=2, embedding_dim=2, m2=0.5, m3=0.1, scale=1.0)
        >>> with torch.no_grad():
        ...     _ = loss.weight.copy_(torch.eye(2))
        >>> emb = torch.tensor([[0.6, 0.8]])  # target cos(acos 0.6 + 0.5) − 0.1 = 0.0430
        >>> round(loss(emb, torch.tensor([0])).item(), 4)  # log(1 + e^(0.8 − 0.0430))
        1.1416
    """

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        m1: float = 1.0,
        m2: float = 0.0,
        m3: float = 0.0,
        scale: float = 64.0,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(num_classes, embedding_dim, scale, reduction=reduction)
        self.m1 = check_number(m1, "m1")
        self.m2 = check_number(m2, "m2")
        self.m3 = check_number(m3, "m3")
        if self.m1 < 1.0:
            raise ValueError(f"Expected argument `m1` to be >= 1 (a multiplicative angular margin), but got {m1}.")
        if not 0.0 <= self.m2 < math.pi:
            raise ValueError(f"Expected argument `m2` to be an angle in radians in [0, π), but got {m2}.")

    def target_cosine(self, cos_target: Tensor) -> Tensor:
        return margin_target_cosine(cos_target, m1=self.m1, m2=self.m2, m3=self.m3)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, m1={self.m1}, m2={self.m2}, m3={self.m3}"
