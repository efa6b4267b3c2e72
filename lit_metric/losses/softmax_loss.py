"""Plain softmax cross-entropy over a learned linear classifier of the embeddings."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from lit_metric._validation import check_embeddings
from lit_metric.losses._margin_softmax import ClassLabelLoss, work_dtype
from lit_metric.losses.base import Reduction

__all__ = ["SoftmaxLoss"]


class SoftmaxLoss(ClassLabelLoss):
    r"""Cross-entropy of ``W x + b`` (a linear classification head on the embeddings).

    References:
        - Wen et al., "A Discriminative Feature Learning Approach for Deep Face Recognition", ECCV 2016
          (softmax supervision, combined with :class:`~lit_metric.losses.CenterLoss`).

    The softmax baseline of the margin-based losses, and the partner of :class:`CenterLoss` in
    :class:`~lit_metric.losses.WeightedSum`.  ``weight`` ``(C, D)`` and ``bias`` ``(C,)`` are
    ``nn.Parameter``\ s (initialised like ``nn.Linear``); the embeddings are used as given.

    ``indices_tuple``: the distinct anchors of a miner's tuples are the samples that contribute (each
    once); ``ref_emb``/``ref_labels`` are ignored (the head is a DDP-synchronised parameter; the mean over
    samples still divides by the global count).

    Args:
        num_classes: number of classes C (labels must lie in ``[0, C)``).
        embedding_dim: embedding size D.
        bias: learn a bias per class.
        reduction: ``"mean"`` over samples, ``"sum"``, or ``"nonzero_mean"``.

    Raises:
        ValueError: if labels are outside ``[0, num_classes)`` or the embeddings do not have
            ``embedding_dim`` columns.

    Example:
        >>> import torch
        >>> loss = SoftmaxLoss(num_classes=3, embedding_dim=4)
        >>> with torch.no_grad():
        ...     _ = loss.weight.zero_(), loss.bias.zero_()
        >>> loss(torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1]))  # uniform: log 3
        tensor(1.0986, grad_fn=<DivBackward0>)
    """

    def __init__(self, num_classes: int, embedding_dim: int, bias: bool = True, reduction: Reduction = "mean") -> None:
        super().__init__(num_classes, embedding_dim, reduction=reduction)
        linear = nn.Linear(self.embedding_dim, self.num_classes, bias=bias)
        self.weight = linear.weight
        self.bias = linear.bias

    def get_logits(self, embeddings: Tensor) -> Tensor:
        """``(B, D) -> (B, C)`` class logits ``W x + b`` (at least float32).

        Raises:
            ValueError: if ``embeddings`` is not ``(B, embedding_dim)``.
            TypeError: if ``embeddings`` is not a floating-point tensor.
        """
        check_embeddings(embeddings)
        self.check_embedding_dim(embeddings)
        dtype = work_dtype(embeddings, self.weight)
        bias = self.bias.to(dtype) if self.bias is not None else None
        return F.linear(embeddings.to(dtype), self.weight.to(dtype), bias).to(dtype)

    def per_sample_terms(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(self.get_logits(embeddings), labels, reduction="none")


