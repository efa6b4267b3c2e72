"""ArcFace: additive angular margin loss (Deng et al. 2019)."""

from __future__ import annotations

import math

from torch import Tensor

from lit_metric.losses._margin_softmax import MarginSoftmaxLoss, check_number, margin_target_cosine
from lit_metric.losses.base import Reduction

__all__ = ["ArcFaceLoss"]


class ArcFaceLoss(MarginSoftmaxLoss):
    r"""Cross-entropy over ``s·cos θ_c`` with the target logit ``s·cos(θ_y + m)`` (m in radians).

    References:
        - Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition", CVPR 2019.

    ``θ_c`` is the angle between the embedding and the learned class weight ``W_c`` (both L2-normalised
    in the forward; ``weight`` is a ``(C, D)`` ``nn.Parameter``).  ``cos(θ + m)`` stops decreasing once
    ``θ + m > π``; there the standard fallback ``cos θ − m·sin m`` is used (as in the authors' code).
    ``easy_margin=True`` applies the margin only where ``cos θ_y > 0`` and keeps ``cos θ_y`` elsewhere.
    ``cos θ`` is clamped to ``[−1 + ε, 1 − ε]`` before ``sin θ = √(1 − cos²θ)`` so gradients stay finite.

    ``indices_tuple``: the distinct anchors of a miner's tuples are the samples that contribute (each
    once); ``ref_emb``/``ref_labels`` are ignored (no gather needed under DDP: ``weight`` is a parameter
    synchronised by DDP; the mean over samples still divides by the global count).

    Mapping to ``pytorch_metric_learning.losses.ArcFaceLoss`` (2.9.0): PML's margin is in **degrees**
    (``margin_pml = math.degrees(margin)``; its default 28.6° is our 0.5 rad), ``W_pml = weight.T``,
    same ``scale``.

    Args:
        num_classes: number of classes C (labels must lie in ``[0, C)``).
        embedding_dim: embedding size D.
        margin: additive angular margin m in radians, in ``[0, π)``.
        scale: logit scale s.
        easy_margin: apply the margin only to targets with ``cos θ_y > 0``.
        reduction: ``"mean"`` over samples, ``"sum"``, or ``"nonzero_mean"``.

    Raises:
        ValueError: if ``margin`` is not in ``[0, π)`` (e.g. degrees passed), ``scale <= 0``, labels are
            outside ``[0, num_classes)`` or the embeddings do not have ``embedding_dim`` columns.

    Example:
        >>> import torch
        >>> loss = ArcFaceLoss(num_classes=2, embedding_dim=2, margin=0.5, scale=1.0)
        >>> with torch.no_grad():
        ...     _ = loss.weight.copy_(torch.eye(2))
        >>> emb = torch.tensor([[0.6, 0.8]])  # θ_0 = acos 0.6: target cos(θ_0 + 0.5) = 0.1430
        >>> round(loss(emb, torch.tensor([0])).item(), 4)  # log(1 + e^(0.8 − 0.1430))
        1.0747
    """

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        margin: float = 0.5,
        scale: float = 64.0,
        easy_margin: bool = False,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(num_classes, embedding_dim, scale, reduction=reduction)
        margin = check_number(margin, "margin")
        if not 0.0 <= margin < math.pi:
            hint = (
                f" Margins are in radians; PML's ArcFaceLoss takes degrees: math.radians({margin}) = {math.radians(margin):.4f}."
                if margin >= math.pi
                else ""
            )
            raise ValueError(f"Expected argument `margin` to be an angle in radians in [0, π), but got {margin}.{hint}")
        self.margin = margin
        self.easy_margin = bool(easy_margin)

    def target_cosine(self, cos_target: Tensor) -> Tensor:
        return margin_target_cosine(cos_target, m2=self.margin, easy_margin=self.easy_margin)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, margin={self.margin}, easy_margin={self.easy_margin}"
