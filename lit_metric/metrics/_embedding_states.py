"""Shared state handling of metrics that accumulate (embeddings, labels, dataset indices) (private)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from lit_metric._validation import check_embeddings, check_labels

__all__ = ["EmbeddingStateMetric", "canonical_order", "checked_batch", "deduplicate_by_index", "has_entries"]


def deduplicate_by_index(indices: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
    """Keep the first occurrence of each dataset index (drops DistributedSampler padding)."""
    uniq, inverse = torch.unique(indices, return_inverse=True)
    first = torch.full((uniq.numel(),), indices.numel(), dtype=torch.long, device=indices.device)
    first.scatter_reduce_(0, inverse, torch.arange(indices.numel(), device=indices.device), reduce="amin")
    first = first.sort().values
    return tuple(t[first] for t in tensors)


def canonical_order(indices: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
    """The accumulated rows in a canonical order: when every dataset index is known (``>= 0``), duplicates are
    dropped (the first occurrence is kept: a padded ``DistributedSampler`` repeats items) and rows are sorted by
    index, so W ranks give exactly the rows one process gives; otherwise the accumulation order is kept."""
    if indices.numel() == 0 or not bool((indices >= 0).all()):
        return tensors
    kept = deduplicate_by_index(indices, indices, *tensors)
    order = torch.argsort(kept[0])
    return tuple(t[order] for t in kept[1:])


def has_entries(state: list[Tensor] | Tensor) -> bool:
    """Whether a ``cat`` state holds anything: a list of batches before a DDP sync, a tensor after it."""
    return state.numel() > 0 if isinstance(state, Tensor) else len(state) > 0


def checked_batch(embeddings: Tensor, labels: Tensor, indices: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """An ``update`` batch validated and detached: ``(B, D)`` embeddings, ``(B,)`` long labels and ``(B,)`` long
    dataset indices (``-1`` each when not given)."""
    check_embeddings(embeddings)
    check_labels(labels, embeddings.shape[0])
    if indices is not None:
        check_labels(indices, embeddings.shape[0], "indices")
    else:
        indices = torch.full_like(labels, -1)
    return embeddings.detach(), labels.detach().long(), indices.detach().long().to(labels.device)


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
        embeddings, labels, indices = checked_batch(embeddings, labels, indices)
        self.embeddings.append(embeddings)
        self.labels.append(labels)
        self.indices.append(indices)

    def ordered(self) -> tuple[Tensor, Tensor]:
        """``(embeddings, labels)`` accumulated so far (over all ranks), deduplicated and in index order."""
        if not has_entries(self.embeddings):
            raise RuntimeError(f"{type(self).__name__}.compute() called before any update().")
        emb, labels = canonical_order(dim_zero_cat(self.indices), dim_zero_cat(self.embeddings), dim_zero_cat(self.labels))
        return emb, labels
