"""Shared state handling of metrics that accumulate (embeddings, labels, dataset indices) (private)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from lit_metric._validation import check_embeddings, check_labels
from lit_metric.metrics.retrieval_metrics import canonical_order, has_entries

__all__ = ["EmbeddingStateMetric"]


class EmbeddingStateMetric(Metric):
    """A ``Metric`` with ``cat`` states of embeddings, labels and dataset indices.

    :meth:`ordered` returns them deduplicated by index (DDP padding) and sorted by index, so the value does
    not depend on the number of ranks.
    """

    embeddings: list[Tensor]
    labels: list[Tensor]
    indices: list[Tensor]

    def add_embedding_states(self) -> None:
        self.add_state("embeddings", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")
        self.add_state("indices", default=[], dist_reduce_fx="cat")

    def update(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None = None) -> None:
        """Accumulate ``(B, D)`` embeddings, ``(B,)`` labels and optional ``(B,)`` dataset indices."""
        check_embeddings(embeddings)
        check_labels(labels, embeddings.shape[0])
        if indices is not None:
            check_labels(indices, embeddings.shape[0], "indices")
        else:
            indices = torch.full_like(labels, -1)
        self.embeddings.append(embeddings.detach())
        self.labels.append(labels.detach().long())
        self.indices.append(indices.detach().long().to(labels.device))

    def ordered(self) -> tuple[Tensor, Tensor]:
        """``(embeddings, labels)`` accumulated so far (over all ranks), deduplicated and in index order."""
        if not has_entries(self.embeddings):
            raise RuntimeError(f"{type(self).__name__}.compute() called before any update().")
        emb, labels = canonical_order(dim_zero_cat(self.indices), dim_zero_cat(self.embeddings), dim_zero_cat(self.labels))
        return emb, labels
