"""A weighted sum of supervised losses (e.g. softmax + center loss), configurable from YAML."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from lit_metric._validation import check_positive
from lit_metric.losses.base import MetricLoss

__all__ = ["WeightedSum"]


class WeightedSum(MetricLoss):
    r"""``Σ_i weights[i] · losses[i](embeddings, labels, indices_tuple, ref_emb, ref_labels)``.

    Every loss receives exactly the arguments the sum receives (``indices_tuple``, ``ref_emb``,
    ``ref_labels`` and ``self_index`` included), validates them itself and reduces itself (so each term
    keeps its own distributed normalisation).  Learned parameters of the parts (class weights, centers)
    are parameters of the sum; :meth:`param_groups` forwards the groups the parts declare (e.g.
    :class:`~lit_metric.losses.CenterLoss`'s ``center_lr``) to the module's optimizer.

    In a LightningCLI config::

        loss:
          class_path: lit_metric.losses.WeightedSum
          init_args:
            losses:
              - class_path: lit_metric.losses.SoftmaxLoss
                init_args: {num_classes: 5, embedding_dim: 32}
              - class_path: lit_metric.losses.CenterLoss
                init_args: {num_classes: 5, embedding_dim: 32}
            weights: [1.0, 0.1]

    Args:
        losses: the losses (at least one :class:`~lit_metric.losses.MetricLoss`).
        weights: one non-negative weight per loss (default: all 1).

    Raises:
        TypeError: if a loss is not a ``MetricLoss`` or a weight is not a number.
        ValueError: if ``losses`` is empty, the lengths differ, or a weight is negative.

    Example:
        >>> import torch
        >>> from lit_metric.losses import CenterLoss, TripletMarginLoss
        >>> loss = WeightedSum([TripletMarginLoss(margin=0.2), CenterLoss(3, 8)], [1.0, 0.01])
        >>> out = loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2]))
        >>> out.ndim, len(loss.last_values)
        (0, 2)
    """

    def __init__(self, losses: list[MetricLoss], weights: list[float] | None = None) -> None:
        super().__init__()
        if isinstance(losses, nn.Module) or not isinstance(losses, Sequence):
            raise TypeError(f"Expected argument `losses` to be a list of MetricLoss, but got {type(losses).__name__}.")
        if len(losses) == 0:
            raise ValueError("Expected argument `losses` to hold at least one loss, but got an empty list.")
        for i, loss in enumerate(losses):
            if not isinstance(loss, MetricLoss):
                raise TypeError(
                    f"Expected argument `losses[{i}]` to be a lit_metric.losses.MetricLoss, but got {type(loss).__name__}."
                )
        weights = [1.0] * len(losses) if weights is None else list(weights)
        if len(weights) != len(losses):
            raise ValueError(
                f"Expected argument `weights` to have one entry per loss ({len(losses)}), but got {len(weights)}."
            )
        self.losses = nn.ModuleList(losses)
        self.weights = [check_positive(w, f"weights[{i}]", allow_zero=True) for i, w in enumerate(weights)]
        self.requires_labels = any(loss.requires_labels for loss in losses)
        self.continuous_labels = any(loss.continuous_labels for loss in losses)
        self.has_class_weights = any(loss.has_class_weights for loss in losses)
        #: the detached value of each part at the last call (for logging)
        self.last_values: list[Tensor] = []

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor | None = None,
        indices_tuple: tuple[Tensor, ...] | None = None,
        ref_emb: Tensor | None = None,
        ref_labels: Tensor | None = None,
        *,
        self_index: Tensor | None = None,
    ) -> Tensor:
        """The weighted sum of the parts (arguments as in :meth:`MetricLoss.forward`)."""
        values = [
            loss(embeddings, labels, indices_tuple, ref_emb, ref_labels, self_index=self_index) for loss in self.losses
        ]
        self.last_values = [v.detach() for v in values]
        total: Tensor = values[0] * self.weights[0]
        for w, v in zip(self.weights[1:], values[1:]):
            total = total + w * v
        return total

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer groups: those each part declares (``param_groups()``), else one group per part."""
        groups: list[dict[str, Any]] = []
        seen: set[int] = set()  # a module shared by two parts is optimised once
        for loss in self.losses:
            declared = getattr(loss, "param_groups", None)
            parts = declared() if callable(declared) else [{"params": list(loss.parameters())}]
            for group in parts:
                params = [p for p in group["params"] if p.requires_grad and id(p) not in seen]
                seen.update(id(p) for p in params)
                if params:
                    groups.append({**group, "params": params})
        return groups

    def extra_repr(self) -> str:
        return f"weights={self.weights}"


