"""RetrievalMetrics: Recall@K, Precision@K, R-Precision and MAP@R from one k-NN pass, leave-one-out or
query/gallery (the In-Shop protocol)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from lit_metric._validation import check_choice, check_embeddings, check_int, check_labels
from lit_metric.distances import BaseDistance, CosineSimilarity
from lit_metric.functional.knn import faiss_metric
from lit_metric.functional.retrieval import (
    DEFAULT_RETRIEVAL_METRICS,
    expand_retrieval_metric_names,
    retrieval_metrics,
)
from lit_metric.metrics._embedding_states import canonical_order, has_entries

__all__ = ["RetrievalMetrics", "canonical_order", "check_mask", "has_entries"]


def check_mask(mask: object, n: int, name: str) -> Tensor:
    """A ``(n,)`` boolean tensor."""
    if not isinstance(mask, Tensor):
        raise TypeError(f"Expected argument `{name}` to be a torch.Tensor, but got {type(mask).__name__}.")
    if mask.dtype != torch.bool:
        raise TypeError(f"Expected argument `{name}` to be a boolean tensor, but got dtype {mask.dtype}.")
    if mask.ndim != 1 or mask.shape[0] != n:
        raise ValueError(f"Expected argument `{name}` to have shape ({n},), but got {tuple(mask.shape)}.")
    return mask


class RetrievalMetrics(Metric):
    """Recall@K, Precision@K, R-Precision and MAP@R as in "A Metric Learning Reality Check" (Musgrave et al.,
    ECCV 2020), all from one exact k-NN pass.

    Two protocols:

    * **leave-one-out** (default): every accumulated item is a query against all the others.
    * **query/gallery** (In-Shop, Liu et al. 2016): pass ``is_query`` / ``is_gallery`` masks to ``update``;
      queries are searched in the gallery only.  An item may be both (it then never retrieves itself).

    For a query with R same-class gallery items (itself excluded), ``rel(i) = 1`` when the i-th neighbour
    shares its label: ``recall@K`` = 1 if a hit is in the top K; ``precision@K`` = hits in the top K / K;
    ``r_precision`` = hits in the top R / R; ``map@r`` = ``(1/R) Σ_{i≤R} rel(i)·precision@i``.  The k-NN depth is
    ``max(K values, max R)``: MAP@R and R-precision are exact, never truncated.

    **Lone queries** (R = 0: no other item of the class in the gallery) cannot be answered and are left out of
    every mean.  **Ties** are broken against the query: among references at exactly the same score, other
    classes rank before the query's class, so collapsed embeddings score at chance level and results do not
    depend on the order of the data.

    Exact k-NN in chunks of ``chunk_size`` queries on the embeddings' device: peak memory ``chunk_size × M``
    scores, never an N×N matrix.  ``backend="faiss"`` searches a flat (exact) faiss index on CPU in float32
    (values equal the torch backend's up to float32 rounding).  Under DDP the states are gathered (``cat``);
    pass the dataset ``indices`` to ``update`` so the duplicates a padded ``DistributedSampler`` adds are dropped.

    Args:
        metrics: names among ``recall@k``, ``precision@k`` (one per value of ``k``), ``recall@<int>``,
            ``precision@<int>``, ``r_precision``, ``map@r``.
        k: values for ``recall@k`` / ``precision@k``.
        distance: the retrieval measure (default cosine similarity).
        backend: ``"torch"`` or ``"faiss"`` (needs ``pip install faiss-cpu``; cosine, dot product or Euclidean).
        chunk_size: queries per chunk.

    Raises:
        ValueError / TypeError: on unknown metric names, ``k`` < 1, a bad backend or chunk size, bad ``update``
            inputs; ``compute`` raises ValueError when no query has a same-class reference.

    Example:
        >>> import torch
        >>> metric = RetrievalMetrics(k=(1, 2))
        >>> emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.8, 0.3]])
        >>> metric.update(emb, torch.tensor([0, 0, 1, 1, 1]))
        >>> {name: round(v.item(), 2) for name, v in metric.compute().items()}
        {'recall@1': 0.8, 'recall@2': 0.8, 'precision@1': 0.8, 'r_precision': 0.8, 'map@r': 0.8}
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    embeddings: list[Tensor]
    labels: list[Tensor]
    indices: list[Tensor]
    query_mask: list[Tensor]
    gallery_mask: list[Tensor]

    def __init__(
        self,
        metrics: Sequence[str] = DEFAULT_RETRIEVAL_METRICS,
        k: int | Sequence[int] = (1, 2, 4, 8),
        distance: BaseDistance | None = None,
        backend: Literal["torch", "faiss"] = "torch",
        chunk_size: int = 1024,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        ks = (k,) if isinstance(k, int) else tuple(k)
        if not ks:
            raise ValueError("Expected argument `k` to hold at least one value, but got an empty sequence.")
        self.k = tuple(check_int(v, "k", 1) for v in ks)
        self.metric_names = expand_retrieval_metric_names(metrics, self.k)
        self.metrics = tuple(metrics) if not isinstance(metrics, str) else (metrics,)
        self.distance = distance if distance is not None else CosineSimilarity()
        if not isinstance(self.distance, BaseDistance):
            raise TypeError(
                f"Expected argument `distance` to be a lit_metric distance, but got {type(self.distance).__name__}."
            )
        self.backend = check_choice(backend, "backend", ("torch", "faiss"))
        if self.backend == "faiss":
            faiss_metric(self.distance)  # raises for a measure faiss cannot serve
            try:
                import faiss  # noqa: F401
            except ImportError as err:  # pragma: no cover - depends on the environment
                raise ImportError("backend='faiss' needs `pip install faiss-cpu`.") from err
        self.chunk_size = check_int(chunk_size, "chunk_size", 1)
        self.add_state("embeddings", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")
        self.add_state("indices", default=[], dist_reduce_fx="cat")
        self.add_state("query_mask", default=[], dist_reduce_fx="cat")
        self.add_state("gallery_mask", default=[], dist_reduce_fx="cat")

    def update(
        self,
        embeddings: Tensor,
        labels: Tensor,
        indices: Tensor | None = None,
        is_query: Tensor | None = None,
        is_gallery: Tensor | None = None,
    ) -> None:
        """Accumulate a batch.

        Args:
            embeddings: ``(B, D)``.
            labels: ``(B,)`` integer class ids.
            indices: ``(B,)`` dataset indices (drop DDP padding duplicates, fix a canonical order).
            is_query: ``(B,)`` bool, the item is a query (default True).
            is_gallery: ``(B,)`` bool, the item is searchable (default True).
        """
        check_embeddings(embeddings)
        n = embeddings.shape[0]
        check_labels(labels, n)
        if indices is not None:
            check_labels(indices, n, "indices")
        else:
            indices = torch.full_like(labels, -1)
        ones = torch.ones(n, dtype=torch.bool, device=labels.device)
        is_query = ones if is_query is None else check_mask(is_query, n, "is_query")
        is_gallery = ones if is_gallery is None else check_mask(is_gallery, n, "is_gallery")
        self.embeddings.append(embeddings.detach())
        self.labels.append(labels.detach().long())
        self.indices.append(indices.detach().long().to(labels.device))
        # uint8, not bool: every collective backend (gloo included) gathers bytes
        self.query_mask.append(is_query.to(device=labels.device, dtype=torch.uint8))
        self.gallery_mask.append(is_gallery.to(device=labels.device, dtype=torch.uint8))

    def compute(self) -> dict[str, Tensor]:
        if not has_entries(self.embeddings):
            raise RuntimeError("RetrievalMetrics.compute() called before any update().")
        emb, labels, is_query, is_gallery = canonical_order(
            dim_zero_cat(self.indices),
            dim_zero_cat(self.embeddings),
            dim_zero_cat(self.labels),
            dim_zero_cat(self.query_mask).bool(),
            dim_zero_cat(self.gallery_mask).bool(),
        )
        common = dict(
            distance=self.distance, metrics=self.metric_names, k=self.k, chunk_size=self.chunk_size, backend=self.backend
        )
        if bool(is_query.all()) and bool(is_gallery.all()):
            return retrieval_metrics(emb, labels, **common)  # type: ignore[arg-type]
        gallery_pos = torch.cumsum(is_gallery.long(), 0) - 1
        query_ref_index = torch.where(is_gallery, gallery_pos, torch.full_like(gallery_pos, -1))[is_query]
        if not bool(is_gallery.any()) or not bool(is_query.any()):
            raise ValueError("Expected at least one query and one gallery item, but got none of one kind.")
        return retrieval_metrics(
            emb[is_query],
            labels[is_query],
            emb[is_gallery],
            labels[is_gallery],
            query_ref_index=query_ref_index,
            **common,  # type: ignore[arg-type]
        )
