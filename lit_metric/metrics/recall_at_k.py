"""Recall@K for metric learning (leave-one-out retrieval)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lit_metric._validation import check_int
from lit_metric.distances import BaseDistance, CosineSimilarity
from lit_metric.functional.knn import knn_chunks
from lit_metric.metrics._embedding_states import EmbeddingStateMetric, deduplicate_by_index

__all__ = ["RecallAtK", "deduplicate_by_index"]


class RecallAtK(EmbeddingStateMetric):
    """Recall@K as used in metric learning: the share of queries with a same-class item among their K
    nearest neighbours, every accumulated embedding being a query against all the others.

    Query ``i`` never retrieves itself (leave-one-out).  A query whose class has no other member
    cannot be answered and is left out of the mean (the usual protocol of CUB/Cars/SOP papers).
    Exact k-NN in chunks of ``chunk_size`` queries: peak memory ``chunk_size × N`` scores, never N×N.
    Ties are broken against the query (a reference of another class at exactly the same score ranks first),
    so duplicated or collapsed embeddings never inflate the score; :class:`RetrievalMetrics` uses the same rule.

    Under DDP the states are gathered (``cat``); pass ``indices`` (dataset indices) to ``update`` so
    that the duplicates a padded ``DistributedSampler`` adds are dropped.

    Args:
        k: the K values (ints >= 1).
        distance: the retrieval measure.
        chunk_size: queries per chunk.

    Raises:
        ValueError / TypeError: on ``k`` < 1 or not an int, non-2-D embeddings, bad labels; ``compute`` raises
            ValueError when a K is larger than the gallery (N − 1 other embeddings per query).

    Example:
        >>> import torch
        >>> metric = RecallAtK(k=(1, 2))
        >>> emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.8, 0.3]])
        >>> metric.update(emb, torch.tensor([0, 0, 1, 1, 1]))
        >>> {name: round(v.item(), 2) for name, v in metric.compute().items()}
        {'recall@1': 0.8, 'recall@2': 0.8}
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        k: int | Sequence[int] = (1, 2, 4, 8),
        distance: BaseDistance | None = None,
        chunk_size: int = 1024,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        ks = (k,) if isinstance(k, int) else tuple(k)
        if not ks:
            raise ValueError("Expected argument `k` to hold at least one value, but got an empty sequence.")
        self.k = tuple(check_int(v, "k", 1) for v in ks)
        self.distance = distance if distance is not None else CosineSimilarity()
        self.chunk_size = check_int(chunk_size, "chunk_size", 1)
        self.add_embedding_states()

    def compute(self) -> dict[str, Tensor]:
        emb, labels = self.ordered()
        return recall_at_k(emb, labels, self.k, self.distance, self.chunk_size)


def recall_at_k(
    embeddings: Tensor,
    labels: Tensor,
    k: Sequence[int],
    distance: BaseDistance,
    chunk_size: int = 1024,
) -> dict[str, Tensor]:
    """Functional leave-one-out Recall@K (see :class:`RecallAtK`)."""
    n = embeddings.shape[0]
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    answerable = counts[inverse] > 1
    kmax = min(max(k), n - 1)
    if kmax < 1 or not bool(answerable.any()):
        raise ValueError(
            "RecallAtK needs at least one class with two or more members among the accumulated embeddings."
        )
    if max(k) > n - 1:
        raise ValueError(
            f"Expected every K of Recall@K to be at most the gallery size, but got K={max(k)} with {n} embeddings "
            f"({n - 1} neighbours per query): Recall@{max(k)} would count every query as a hit. Lower `k` (the "
            "module's `recall_k`) or evaluate on more data."
        )
    q = answerable.nonzero(as_tuple=True)[0]
    # ties are broken against the query (a reference of another class first), as in RetrievalMetrics
    first_hits = []
    for start, _, idx in knn_chunks(
        embeddings[q], embeddings, kmax, distance, chunk_size, q, query_labels=labels[q], ref_labels=labels
    ):
        rows = q[start : start + idx.shape[0]]
        hit = labels[idx] == labels[rows].unsqueeze(1)  # (c, kmax)
        first_hits.append(torch.where(hit.any(1), hit.float().argmax(1), torch.full_like(rows, kmax)))
    first_hit = torch.cat(first_hits)
    return {f"recall@{kk}": (first_hit < kk).float().mean() for kk in k}
