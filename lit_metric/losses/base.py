"""The supervised loss contract shared by every loss in :mod:`lit_metric.losses`.

``loss(embeddings, labels=None, indices_tuple=None, ref_emb=None, ref_labels=None) -> scalar``:

* ``embeddings`` ``(B, D)`` are the anchors; ``ref_emb`` ``(N, D)`` the references (default: the
  anchors themselves, in which case each anchor's own copy is excluded from its pairs).
* ``indices_tuple`` from a miner: ``(a, p, n)`` triplets or ``(a1, p, a2, n)`` pairs; ``a`` indexes
  ``embeddings``, ``p``/``n`` index ``ref_emb``.  ``None`` means every valid tuple.
* Keyword-only ``self_index`` ``(B,)``: position of each anchor among the references, to exclude
  self pairs when ``ref_emb`` contains the anchors (the modules pass it under DDP).
* A batch with no valid tuple returns a zero that still has a graph; never NaN.
* Reductions go through :meth:`MetricLoss.reduce` so that under
  :func:`lit_metric.distributed.global_reduction` they divide by counts summed over ranks.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from lit_metric import distributed
from lit_metric._validation import check_choice, check_embeddings, check_labels
from lit_metric.functional.tuples import check_indices_tuple, pair_masks

__all__ = ["LossInputs", "MetricLoss", "Reduction"]

Reduction = Literal["mean", "nonzero_mean", "sum"]
REDUCTIONS: tuple[str, ...] = ("mean", "nonzero_mean", "sum")


class LossInputs(NamedTuple):
    """Validated inputs handed to :meth:`MetricLoss.compute_loss`."""

    embeddings: Tensor  # (B, D) anchors
    labels: Tensor | None  # (B,) or (B, L) for continuous-label losses
    indices_tuple: tuple[Tensor, ...] | None
    ref_emb: Tensor  # (N, D)
    ref_labels: Tensor | None  # (N,)
    self_index: Tensor | None  # (B,) position of each anchor among the references, or None

    def masks(self) -> tuple[Tensor, Tensor]:
        """``(B, N)`` positive and negative masks (self pairs excluded from positives)."""
        if self.labels is None or self.ref_labels is None:
            raise ValueError("Expected argument `labels` for this loss, but got None.")
        return pair_masks(self.labels, self.ref_labels, self.self_index)


class MetricLoss(nn.Module):
    """Base class for supervised metric losses (see the module docstring for the contract).

    Subclasses implement :meth:`compute_loss` on validated :class:`LossInputs` and reduce with
    :meth:`reduce` / :meth:`reduce_total`.
    """

    #: whether labels are required (False e.g. for pure-tuple losses driven by a miner)
    requires_labels: bool = True
    #: whether labels are continuous (float (B,) or (B, L)) rather than integer class ids
    continuous_labels: bool = False
    #: whether the loss holds a learned (C, D) class matrix (margin-softmax, center, proxy losses)
    has_class_weights: bool = False

    def __init__(self, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.reduction = check_choice(reduction, "reduction", REDUCTIONS)

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
        """Validate the inputs and compute the scalar loss.

        Args:
            embeddings: ``(B, D)`` anchors.
            labels: ``(B,)`` integer class ids (``(B,)``/``(B, L)`` floats for continuous-label losses).
            indices_tuple: ``(a, p, n)`` or ``(a1, p, a2, n)`` from a miner; ``None`` = all valid tuples.
            ref_emb: ``(N, D)`` references; defaults to ``embeddings``.
            ref_labels: ``(N,)`` reference labels; defaults to ``labels`` when ``ref_emb`` is None.
            self_index: ``(B,)`` position of each anchor in ``ref_emb`` (excluded self pairs).

        Raises:
            ValueError: on wrong shapes, a missing ``labels``, or a malformed ``indices_tuple``.
            TypeError: on non-tensor inputs or float labels where class ids are needed.
        """
        return self.compute_loss(self.prepare(embeddings, labels, indices_tuple, ref_emb, ref_labels, self_index))

    def prepare(
        self,
        embeddings: Tensor,
        labels: Tensor | None,
        indices_tuple: tuple[Tensor, ...] | None,
        ref_emb: Tensor | None,
        ref_labels: Tensor | None,
        self_index: Tensor | None,
    ) -> LossInputs:
        """Validate and fill defaults (shared with miners through :func:`prepare_refs`)."""
        check_embeddings(embeddings)
        b = embeddings.shape[0]
        if labels is None:
            if self.requires_labels:
                raise ValueError(
                    f"Expected argument `labels` for {type(self).__name__}, but got None. "
                    "Pass class ids of shape (B,)."
                )
        else:
            check_labels(labels, b, continuous=self.continuous_labels)
        if ref_emb is None:
            if ref_labels is not None:
                raise ValueError("Got `ref_labels` without `ref_emb`: pass both or neither.")
            ref_emb, ref_labels = embeddings, labels
            if self_index is None:
                self_index = torch.arange(b, device=embeddings.device)
        else:
            check_embeddings(ref_emb, "ref_emb")
            if ref_emb.shape[1] != embeddings.shape[1]:
                raise ValueError(
                    f"Expected `ref_emb` to have the embedding dimension {embeddings.shape[1]}, "
                    f"but got {ref_emb.shape[1]}."
                )
            if labels is not None:
                if ref_labels is None:
                    raise ValueError("Expected argument `ref_labels` together with `ref_emb`, but got None.")
                check_labels(ref_labels, ref_emb.shape[0], "ref_labels", continuous=self.continuous_labels)
        if self_index is not None:
            if self_index.shape != (b,):
                raise ValueError(f"Expected `self_index` of shape ({b},), but got {tuple(self_index.shape)}.")
            self_index = self_index.long()
        if indices_tuple is not None:
            indices_tuple = check_indices_tuple(indices_tuple, b, ref_emb.shape[0])
        return LossInputs(embeddings, labels, indices_tuple, ref_emb, ref_labels, self_index)

    def compute_loss(self, inputs: LossInputs) -> Tensor:
        """The loss on validated inputs; subclasses implement it."""
        raise NotImplementedError

    # --- reductions (distributed-aware) -------------------------------------------------------
    def reduce(self, terms: Tensor, reduction: str | None = None) -> Tensor:
        """Reduce per-tuple (or per-sample) loss terms with ``reduction`` (default: ``self.reduction``)."""
        reduction = reduction or self.reduction
        if reduction == "sum":
            return distributed.reduce_sum(terms.sum())
        count = (terms > 0).sum() if reduction == "nonzero_mean" else terms.numel()
        return distributed.reduce_mean(terms.sum(), count)

    def reduce_total(self, total: Tensor, count: Tensor | int, nonzero_count: Tensor | int) -> Tensor:
        """Reduce from a precomputed sum and counts (for losses that never materialise the terms)."""
        if self.reduction == "sum":
            return distributed.reduce_sum(total)
        return distributed.reduce_mean(total, nonzero_count if self.reduction == "nonzero_mean" else count)

    @staticmethod
    def zero(inputs: LossInputs | Tensor) -> Tensor:
        """A zero loss that keeps the graph (``backward()`` gives zero gradients)."""
        if isinstance(inputs, LossInputs):
            return (inputs.embeddings.sum() + inputs.ref_emb.sum()) * 0.0
        return inputs.sum() * 0.0

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"
