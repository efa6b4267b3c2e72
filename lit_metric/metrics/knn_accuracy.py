"""Weighted k-NN classification accuracy (Wu et al. 2018): the standard monitor of self-supervised training."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from lit_metric._validation import check_int, check_positive
from lit_metric.distances import BaseDistance, CosineSimilarity
from lit_metric.functional.knn import knn_chunks
from lit_metric.metrics._embedding_states import checked_batch, deduplicate_by_index, has_entries

__all__ = ["KNNAccuracy", "knn_accuracy"]


class KNNAccuracy(Metric):
    r"""Top-1 accuracy of the temperature-weighted k-NN classifier of Wu et al. 2018.

    A query ``q`` takes its ``k`` most similar bank items ``j`` (similarity ``s_j``), each voting for its
    class with weight :math:`\exp(s_j/\tau)`; the predicted class is the one with the largest total
    weight (ties go to the smallest class id).  The metric is the share of queries predicted correctly.

    References:
        - Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance Discrimination", CVPR 2018.

    Update API: ``update(embeddings, labels, indices=None, is_bank=False)``.

    * ``is_bank=True`` adds labelled **bank** items (e.g. the training set's embeddings, the paper's
      protocol); ``is_bank=False`` adds **queries** (the validation set).
    * If no bank item was added by ``compute()``, the queries are classified **leave-one-out** against
      each other (each query's own entry excluded) — the protocol for class-disjoint evaluation sets
      such as Omniglot's evaluation alphabets, where no labelled training set of those classes exists.

    ``k`` is capped at the number of available bank items.  States are ``cat`` lists (synced under DDP);
    pass ``indices`` (dataset indices) so that the duplicates a padded ``DistributedSampler`` adds are
    dropped.  Similarities are computed in chunks of ``chunk_size`` queries (never a Q × N matrix at once).

    Args:
        k: neighbours per query.
        temperature: ``τ > 0`` of the vote weights.
        distance: the similarity (a distance ``d`` votes with ``exp(−d/τ)``); default cosine.
        chunk_size: queries per chunk.

    Raises:
        ValueError / TypeError: on ``k`` < 1, a non-positive temperature, non-2-D embeddings or bad labels.

    Example:
        >>> import torch
        >>> metric = KNNAccuracy(k=2, temperature=0.1)
        >>> metric.update(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]), is_bank=True)
        >>> metric.update(torch.tensor([[0.9, 0.2], [0.3, 0.8], [0.8, 0.1]]), torch.tensor([0, 1, 1]))
        >>> metric.compute()
        tensor(0.6667)
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        k: int = 200,
        temperature: float = 0.07,
        distance: BaseDistance | None = None,
        chunk_size: int = 1024,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.k = check_int(k, "k", 1)
        self.temperature = check_positive(temperature, "temperature")
        self.distance = distance if distance is not None else CosineSimilarity()
        self.chunk_size = check_int(chunk_size, "chunk_size", 1)
        for prefix in ("query", "bank"):
            self.add_state(f"{prefix}_embeddings", default=[], dist_reduce_fx="cat")
            self.add_state(f"{prefix}_labels", default=[], dist_reduce_fx="cat")
            self.add_state(f"{prefix}_indices", default=[], dist_reduce_fx="cat")

    def update(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None = None, is_bank: bool = False) -> None:
        """Accumulate ``(B, D)`` embeddings with ``(B,)`` labels and optional ``(B,)`` dataset indices.

        Args:
            embeddings: ``(B, D)``.
            labels: ``(B,)`` integer class ids.
            indices: ``(B,)`` dataset indices (to drop DDP padding duplicates), or None.
            is_bank: add the items to the labelled bank instead of the queries.
        """
        embeddings, labels, indices = checked_batch(embeddings, labels, indices)
        prefix = "bank" if is_bank else "query"
        getattr(self, f"{prefix}_embeddings").append(embeddings)
        getattr(self, f"{prefix}_labels").append(labels)
        getattr(self, f"{prefix}_indices").append(indices)

    def _gathered(self, prefix: str) -> tuple[Tensor, Tensor] | None:
        emb_list = getattr(self, f"{prefix}_embeddings")
        if not has_entries(emb_list):
            return None
        emb = dim_zero_cat(emb_list)
        labels = dim_zero_cat(getattr(self, f"{prefix}_labels"))
        indices = dim_zero_cat(getattr(self, f"{prefix}_indices"))
        if bool((indices >= 0).all()):
            emb, labels = deduplicate_by_index(indices, emb, labels)
        return emb, labels

    def compute(self) -> Tensor:
        queries = self._gathered("query")
        if queries is None:
            raise RuntimeError("KNNAccuracy.compute() called before any query update (is_bank=False).")
        bank = self._gathered("bank")
        if bank is None:
            return knn_accuracy(queries[0], queries[1], None, None, self.k, self.temperature, self.distance, self.chunk_size)
        return knn_accuracy(
            queries[0], queries[1], bank[0], bank[1], self.k, self.temperature, self.distance, self.chunk_size
        )


def knn_accuracy(
    queries: Tensor,
    query_labels: Tensor,
    bank: Tensor | None,
    bank_labels: Tensor | None,
    k: int = 200,
    temperature: float = 0.07,
    distance: BaseDistance | None = None,
    chunk_size: int = 1024,
) -> Tensor:
    """Functional weighted k-NN accuracy (see :class:`KNNAccuracy`); ``bank=None``: leave-one-out on the queries.

    Raises:
        ValueError: if fewer than one bank item (two queries in leave-one-out mode) is available.
    """
    distance = distance if distance is not None else CosineSimilarity()
    if bank is None or bank_labels is None:
        refs, ref_labels, leave_one_out = queries, query_labels, True
    else:
        refs, ref_labels, leave_one_out = bank, bank_labels, False
    n_avail = refs.shape[0] - (1 if leave_one_out else 0)
    if n_avail < 1 or queries.shape[0] == 0:
        raise ValueError(
            "KNNAccuracy needs at least one query and one bank item (two queries in leave-one-out mode), but got "
            f"{queries.shape[0]} queries and {refs.shape[0]} bank items."
        )
    kk = min(k, n_avail)
    classes, bank_class = torch.unique(ref_labels, return_inverse=True)
    query_ref_index = torch.arange(queries.shape[0], device=queries.device) if leave_one_out else None
    correct = torch.zeros((), dtype=torch.long, device=queries.device)
    for start, scores, idx in knn_chunks(queries, refs, kk, distance, chunk_size, query_ref_index):
        sim = -distance.to_dissimilarity(scores).float()  # larger = closer
        weights = torch.exp((sim - sim[:, :1]) / temperature)  # row max first (sorted): exp never overflows
        votes = torch.zeros(sim.shape[0], classes.numel(), dtype=weights.dtype, device=weights.device)
        votes.scatter_add_(1, bank_class[idx], weights)
        predicted = classes[votes.argmax(1)]
        correct += (predicted == query_labels[start : start + sim.shape[0]]).sum()
    return correct.float() / queries.shape[0]
