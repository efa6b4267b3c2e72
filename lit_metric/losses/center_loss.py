"""Center loss: pull each embedding towards a learned center of its class (Wen et al. 2016)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lit_metric.losses._margin_softmax import ClassLabelLoss, check_number, work_dtype
from lit_metric.losses.base import Reduction

__all__ = ["CenterLoss"]


class CenterLoss(ClassLabelLoss):
    r"""``½‖x_i − c_{y_i}‖²`` per sample, with learnable class centers ``c`` ``(C, D)``.

    References:
        - Wen et al., "A Discriminative Feature Learning Approach for Deep Face Recognition", ECCV 2016.

    The center loss only pulls classes together; it is meant to be combined with a separating loss,
    e.g. ``WeightedSum([SoftmaxLoss(C, D), CenterLoss(C, D)], [1.0, λ])`` (the paper's
    ``L = L_S + λ·L_C``).  Embeddings are used as given (not normalised); :attr:`centers` is an
    ``nn.Parameter`` initialised ``N(0, 1/D)`` (norm ≈ 1, like unit-norm embeddings).

    **Center learning rate.**  The paper updates centers by their own rule with rate α, separately from
    the network.  Here the centers are ordinary parameters updated by the module's optimizer, and
    ``center_lr`` gives them their own learning rate: :meth:`param_groups` declares a group
    ``{"params": [centers], "lr": center_lr, "name": "centers"}``, which
    :meth:`lit_metric.MetricLearningModule.parameter_groups` uses as is.  Precedence for the centers:
    ``center_lr`` > the module's ``loss_lr`` > the optimizer's ``lr``.  (Inside :class:`WeightedSum` the
    center gradient is multiplied by the loss weight λ too — scale ``center_lr`` by ``1/λ`` for an
    update independent of λ, as in the paper.)

    ``indices_tuple``: the distinct anchors of a miner's tuples are the samples that contribute (each
    once); ``ref_emb``/``ref_labels`` are ignored (the centers are a DDP-synchronised parameter; the mean
    over samples still divides by the global count).

    Args:
        num_classes: number of classes C (labels must lie in ``[0, C)``).
        embedding_dim: embedding size D.
        center_lr: learning rate of the centers (None: the module's ``loss_lr`` or the optimizer's).
        reduction: ``"mean"`` over samples (default), or ``"sum"`` (the paper's ``½ Σ_i``).

    Raises:
        ValueError: if ``center_lr <= 0``, labels are outside ``[0, num_classes)`` or the embeddings do not
            have ``embedding_dim`` columns.

    Example:
        >>> import torch
        >>> loss = CenterLoss(num_classes=2, embedding_dim=2)
        >>> with torch.no_grad():
        ...     _ = loss.centers.zero_()
        >>> loss(torch.tensor([[3.0, 4.0], [0.0, 1.0]]), torch.tensor([0, 1]))  # (½·25 + ½·1) / 2
        tensor(6.5000, grad_fn=<DivBackward0>)
    """

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        center_lr: float | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(num_classes, embedding_dim, reduction=reduction)
        if center_lr is not None:
            center_lr = check_number(center_lr, "center_lr")
            if center_lr <= 0:
                raise ValueError(f"Expected argument `center_lr` to be > 0 (or None), but got {center_lr}.")
        self.center_lr = center_lr
        self.centers = nn.Parameter(torch.randn(self.num_classes, self.embedding_dim) / self.embedding_dim**0.5)

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer parameter groups of this loss (the centers, with ``center_lr`` when set)."""
        group: dict[str, Any] = {"params": [self.centers], "name": "centers"}
        if self.center_lr is not None:
            group["lr"] = self.center_lr
        return [group]

    def per_sample_terms(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        dtype = work_dtype(embeddings, self.centers)
        diff = embeddings.to(dtype) - self.centers.to(dtype)[labels]
        return 0.5 * diff.pow(2).sum(dim=1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, center_lr={self.center_lr}"
