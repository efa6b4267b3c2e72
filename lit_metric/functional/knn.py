"""Exact k-nearest-neighbour search in chunks (never an N×M matrix at once)."""

from __future__ import annotations

import torch
from torch import Tensor

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lit_metric.distances import BaseDistance

__all__ = ["knn"]


def knn(
    queries: Tensor,
    refs: Tensor,
    k: int,
    distance: BaseDistance,
    chunk_size: int = 1024,
    query_ref_index: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest references of each query, closest first.

    Args:
        queries: ``(Q, D)``.
        refs: ``(M, D)``.
        k: neighbours per query (``k <= M``, minus one when self matches are excluded).
        distance: the measure; similarities rank larger-first.
        chunk_size: queries per chunk: peak memory is ``chunk_size × M`` scores.
        query_ref_index: ``(Q,)`` position of each query among the references (excluded: leave-one-out),
            or ``-1`` for queries that are not in the references.

    Returns:
        ``(scores, indices)`` of shape ``(Q, k)``: the measure's values and reference indices.
    """
    n_avail = refs.shape[0] - (1 if query_ref_index is not None else 0)
    if k > n_avail:
        raise ValueError(
            f"Expected argument `k` to be at most the number of references ({n_avail}), but got {k}."
        )
    out_scores, out_idx = [], []
    worst = float("-inf")
    for start in range(0, queries.shape[0], chunk_size):
        q = queries[start : start + chunk_size]
        dis = distance.to_dissimilarity(distance.pairwise(q, refs))  # smaller = closer
        if query_ref_index is not None:
            qi = query_ref_index[start : start + chunk_size]
            rows = torch.arange(q.shape[0], device=q.device)[qi >= 0]
            dis[rows, qi[qi >= 0]] = -worst
        vals, idx = torch.topk(dis, k, dim=1, largest=False, sorted=True)
        out_scores.append(distance.to_dissimilarity(vals))
        out_idx.append(idx)
    if not out_idx:
        return queries.new_zeros((0, k)), torch.zeros((0, k), dtype=torch.long, device=queries.device)
    return torch.cat(out_scores), torch.cat(out_idx)
