"""CosFace: large margin cosine loss (Wang et al. 2018)."""

from __future__ import annotations

from torch import Tensor

from lit_metric.losses._margin_softmax import MarginSoftmaxLoss, check_number, margin_target_cosine
from lit_metric.losses.base import Reduction

__all__ = ["CosFaceLoss"]


class CosFaceLoss(MarginSoftmaxLoss):
    r"""Cross-entropy over ``s·cos θ_c`` with the target logit ``s·(cos θ_y − m)``.

    References:
        - Wang et al., "CosFace: Large Margin Cosine Loss for Deep Face Recognition", CVPR 2018.
        - Wang et al., "Additive Margin Softmax for Face Verification", IEEE SPL 2018 (AM-Softmax, the
          same loss).

    ``θ_c`` is the angle between the embedding and the learned class weight ``W_c`` (both L2-normalised
    in the forward; ``weight`` is a ``(C, D)`` ``nn.Parameter``).  ``margin = 0`` gives the normalised
    softmax (NormFace).  The margin is in cosine units; a negative margin (as in "Negative Margin
    Matters", Liu et al. 2020) is allowed.

    ``indices_tuple``: the distinct anchors of a miner's tuples are the samples that contribute (each
    once); ``ref_emb``/``ref_labels`` are ignored (no gather needed under DDP: ``weight`` is a parameter
    synchronised by DDP; the mean over samples still divides by the global count).

    Mapping to ``pytorch_metric_learning.losses.CosFaceLoss`` (2.9.0): same ``margin`` and ``scale``,
    ``W_pml = weight.T``.

    Args:
        num_classes: number of classes C (labels must lie in ``[0, C)``).
        embedding_dim: embedding size D.
        margin: additive cosine margin m.
        scale: logit scale s.
        reduction: ``"mean"`` over samples, ``"sum"``, or ``"nonzero_mean"``.

    Raises:
        ValueError: if ``scale <= 0``, labels are outside ``[0, num_classes)`` or the embeddings do not
            have ``embedding_dim`` columns.

    Example:
        >>> import torch
        >>> loss = CosFaceLoss(num_classes=2, embedding_dim=2, margin=0.35, scale=1.0)
        >>> with torch.no_grad():
        ...     _ = loss.weight.copy_(torch.eye(2))
        >>> emb = torch.tensor([[0.6, 0.8]])  # cos θ_0 = 0.6, cos θ_1 = 0.8
        >>> round(loss(emb, torch.tensor([0])).item(), 4)  # log(1 + e^(0.8 − (0.6 − 0.35)))
        1.0055
    """

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        margin: float = 0.35,
        scale: float = 64.0,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(num_classes, embedding_dim, scale, reduction=reduction)
        self.margin = check_number(margin, "margin")

    def target_cosine(self, cos_target: Tensor) -> Tensor:
        return margin_target_cosine(cos_target, m3=self.margin)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, margin={self.margin}"
