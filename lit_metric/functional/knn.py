"""Exact k-nearest-neighbour search in chunks (never an N×M matrix at once), torch or faiss.

Tie rule (both backends): references are ranked by the measure, closest first; among references at exactly
the same value, those of a *different* label come first when labels are given (the pessimistic rule used by
the retrieval metrics: a tie never helps the query), then the lower reference position.  The rule is exact:
every chunk fetches ``k + 1`` neighbours, and the rows whose ``k``-th and ``(k+1)``-th values are equal (a tie
group cut by the boundary) are recomputed by a full stable sort of that row.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from lit_metric.functional import _topk_ext

if TYPE_CHECKING:
    from lit_metric.distances import BaseDistance

__all__ = ["faiss_metric", "knn", "knn_chunks"]

Backend = Literal["torch", "faiss"]
#: queries per faiss search call at least (faiss blocks its own score buffer; only ``chunk × (k + 2)`` results are held)
FAISS_MIN_CHUNK = 4096


def knn(
    queries: Tensor,
    refs: Tensor,
    k: int,
    distance: BaseDistance,
    chunk_size: int = 1024,
    query_ref_index: Tensor | None = None,
    *,
    backend: Backend = "torch",
) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest references of each query, closest first (ties: lower reference position first).

    Args:
        queries: ``(Q, D)``.
        refs: ``(M, D)``.
        k: neighbours per query (``k <= M``, minus one when self matches are excluded).
        distance: the measure; similarities rank larger-first.
        chunk_size: queries per chunk: peak memory is ``chunk_size × M`` scores.
        query_ref_index: ``(Q,)`` position of each query among the references (excluded: leave-one-out),
            or ``-1`` for queries that are not in the references.
        backend: ``"torch"`` (exact, on the inputs' device) or ``"faiss"`` (exact flat index on CPU, float32;
            needs ``faiss-cpu``).

    Returns:
        ``(scores, indices)`` of shape ``(Q, k)``: the measure's values and reference indices.

    Raises:
        ValueError: if ``k`` exceeds the number of available references, or on a backend/distance that
            faiss cannot serve.
    """
    out_scores, out_idx = [], []
    for _, scores, idx in knn_chunks(queries, refs, k, distance, chunk_size, query_ref_index, backend=backend):
        out_scores.append(scores)
        out_idx.append(idx)
    if not out_idx:
        return queries.new_zeros((0, k)), torch.zeros((0, k), dtype=torch.long, device=queries.device)
    return torch.cat(out_scores), torch.cat(out_idx)


def knn_chunks(
    queries: Tensor,
    refs: Tensor,
    k: int,
    distance: BaseDistance,
    chunk_size: int = 1024,
    query_ref_index: Tensor | None = None,
    *,
    query_labels: Tensor | None = None,
    ref_labels: Tensor | None = None,
    backend: Backend = "torch",
) -> Iterator[tuple[int, Tensor, Tensor]]:
    """:func:`knn` one chunk of queries at a time: an iterator of ``(start, scores, indices)`` with ``(c, k)``
    tensors for the queries ``start : start + c``.

    With ``query_labels`` and ``ref_labels``, ties are broken against the query (different label first).
    On the CPU (float32, cosine or dot product, enough references) the selection is the compiled one of
    :mod:`lit_metric.functional._topk_ext` where it applies (leave-one-out over most references also halves
    the products): same results, faster.
    Peak memory: torch, ``chunk_size × M`` scores plus ``chunk_size × (k + 1)`` results (the compiled path:
    ``M × (2 (k + 1) + 16)`` candidates of 8 bytes, taken only when that is at most twice as much); faiss, its own
    blocked score buffer plus ``max(chunk_size, FAISS_MIN_CHUNK) × (k + 2)`` results (faiss is much slower
    on small query batches).  Arguments are checked when called, before iteration.
    """
    n_refs = refs.shape[0]
    n_avail = n_refs - (1 if query_ref_index is not None and bool((query_ref_index >= 0).any()) else 0)
    if k > n_avail:
        raise ValueError(f"Expected argument `k` to be at most the number of references ({n_avail}), but got {k}.")
    if backend not in ("torch", "faiss"):
        raise ValueError(f"Expected argument `backend` to be one of ['torch', 'faiss'], but got {backend!r}.")
    if (query_labels is None) != (ref_labels is None):
        raise ValueError("Expected `query_labels` and `ref_labels` to be given together, but got only one.")
    searcher: _FaissSearcher | _CompiledSearcher | None = None
    if backend == "faiss":
        searcher = _FaissSearcher(refs, distance)
        chunk_size = max(chunk_size, FAISS_MIN_CHUNK)
    elif queries.device.type == "cpu" and queries.dtype == torch.float32:
        symmetric = _self_retrieval(queries, refs, query_ref_index)
        if _topk_ext.applies(refs, k, distance, chunk_size, n_queries=None if symmetric else queries.shape[0]):
            searcher = _CompiledSearcher(queries, refs, distance, query_ref_index, symmetric)
    return _iterate_chunks(queries, refs, k, distance, chunk_size, query_ref_index, query_labels, ref_labels, searcher)


def _iterate_chunks(
    queries: Tensor,
    refs: Tensor,
    k: int,
    distance: BaseDistance,
    chunk_size: int,
    query_ref_index: Tensor | None,
    query_labels: Tensor | None,
    ref_labels: Tensor | None,
    searcher: _FaissSearcher | _CompiledSearcher | None,
) -> Iterator[tuple[int, Tensor, Tensor]]:
    for start in range(0, queries.shape[0], chunk_size):
        q = queries[start : start + chunk_size]
        qi = None if query_ref_index is None else query_ref_index[start : start + chunk_size]
        ql = None if query_labels is None else query_labels[start : start + chunk_size]
        if searcher is None:
            vals, idx, raw_chunk = _torch_candidates(q, refs, k, distance, qi)
        else:
            vals, idx = searcher.search(start, q, k, qi)
            raw_chunk = None
        scores, idx = _finalize(q, refs, k, distance, qi, ql, ref_labels, vals, idx, raw_chunk)
        yield start, scores, idx


def _self_retrieval(queries: Tensor, refs: Tensor, query_ref_index: Tensor | None) -> bool:
    """Leave-one-out search in which every query is a reference and the queries are most of the references:
    the case where the symmetric block path (``_topk_ext``) pays off."""
    return (
        query_ref_index is not None
        and 2 * queries.shape[0] >= refs.shape[0]
        and query_ref_index.numel() > 0
        and bool((query_ref_index >= 0).all())
    )


class _CompiledSearcher:
    """Candidates from the compiled selection of :mod:`lit_metric.functional._topk_ext`, all queries at once on
    the first chunk (``symmetric``: the blocks of ``refs @ refs.T`` computed once, for leave-one-out over most
    references; otherwise every block of ``queries @ refs.T``), then handed out chunk by chunk."""

    def __init__(
        self, queries: Tensor, refs: Tensor, distance: BaseDistance, query_ref_index: Tensor | None, symmetric: bool
    ) -> None:
        self.queries, self.refs, self.distance = queries, refs, distance
        self.query_ref_index, self.symmetric = query_ref_index, symmetric
        self.found: tuple[Tensor, Tensor, Tensor] | None = None  # values, ids, the result row of each query

    def search(self, start: int, q: Tensor, k: int, qi: Tensor | None) -> tuple[Tensor, Tensor]:
        """``(c, k + 1)`` ascending dissimilarities and ids for the queries ``start : start + c``."""
        if self.found is None:
            if self.symmetric:
                assert self.query_ref_index is not None  # checked by _self_retrieval
                vals, idx = _topk_ext.self_topk(self.refs, k, self.distance)  # (M, k + 1) views
                self.found = vals, idx, self.query_ref_index
            else:
                vals, idx = _topk_ext.cross_topk(self.queries, self.refs, k, self.distance, self.query_ref_index)
                self.found = vals, idx, torch.arange(self.queries.shape[0])
        vals, idx, rows_of = self.found
        rows = rows_of[start : start + q.shape[0]]
        return self.distance.to_dissimilarity(vals[rows]), idx[rows].long()


def _self_excluded_scores(q: Tensor, refs: Tensor, distance: BaseDistance, qi: Tensor | None) -> Tensor:
    """``(c, M)`` values of the measure, the query's own entry set to the worst value (never retrieved)."""
    raw = distance.pairwise(q, refs)
    if qi is not None:
        own = qi >= 0
        rows = torch.arange(q.shape[0], device=q.device)[own]
        raw[rows, qi[own]] = float(distance.to_dissimilarity(torch.tensor(float("inf"))))
    return raw


def _torch_candidates(
    q: Tensor, refs: Tensor, k: int, distance: BaseDistance, qi: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Top ``k + 1`` as ascending dissimilarities (one extra to detect a tie cut by the boundary), their ids, and
    the chunk's raw scores.  Selecting on the raw values (largest first for a similarity) saves a pass over the
    ``(c, M)`` matrix; only the ``(c, k + 1)`` winners are converted."""
    raw = _self_excluded_scores(q, refs, distance, qi)
    vals, idx = torch.topk(raw, min(k + 1, refs.shape[0]), dim=1, largest=distance.is_similarity, sorted=True)
    return distance.to_dissimilarity(vals), idx, raw


def _finalize(
    q: Tensor,
    refs: Tensor,
    k: int,
    distance: BaseDistance,
    qi: Tensor | None,
    ql: Tensor | None,
    ref_labels: Tensor | None,
    vals: Tensor,
    idx: Tensor,
    raw_chunk: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """Apply the tie rule to ``(c, >= k)`` ascending candidates; return ``(c, k)`` scores (measure units), ids."""
    if vals.shape[1] > k:
        cut = vals[:, k] == vals[:, k - 1]  # a tie group crosses the boundary: membership needs the full row
    else:
        cut = torch.zeros(vals.shape[0], dtype=torch.bool, device=vals.device)
    vals, idx = vals[:, :k], idx[:, :k]
    inner = (vals[:, 1:] == vals[:, :-1]).any(1) & ~cut if k > 1 else torch.zeros_like(cut)
    any_inner, any_cut = bool(inner.any()), bool(cut.any())
    if any_inner or any_cut:
        vals, idx = vals.clone(), idx.clone()  # rows are rewritten below
    if any_inner:  # ties inside the top k: reorder those rows by the tie rule
        rows = inner.nonzero(as_tuple=True)[0]
        flag = None if ql is None else _same_label(ql[rows], ref_labels, idx[rows])
        vals[rows], idx[rows] = _lexsort_rows(vals[rows], idx[rows], flag)
    if any_cut:
        rows = cut.nonzero(as_tuple=True)[0]
        raw_rows = (
            _self_excluded_scores(q[rows], refs, distance, None if qi is None else qi[rows])
            if raw_chunk is None
            else raw_chunk[rows]
        )
        dis_rows = distance.to_dissimilarity(raw_rows)
        positions = torch.arange(refs.shape[0], device=dis_rows.device).expand_as(dis_rows)
        flag = None if ql is None else _same_label(ql[rows].to(dis_rows.device), ref_labels, positions)
        full_vals, full_idx = _lexsort_rows(dis_rows, positions, flag)
        vals[rows] = full_vals[:, :k].to(vals.dtype).to(vals.device)
        idx[rows] = full_idx[:, :k].to(idx.device)
    return distance.to_dissimilarity(vals), idx


def _same_label(query_labels: Tensor, ref_labels: Tensor | None, idx: Tensor) -> Tensor:
    assert ref_labels is not None  # internal: labels come in pairs (checked in knn_chunks)
    return ref_labels.to(idx.device)[idx] == query_labels.to(idx.device).unsqueeze(1)


def _lexsort_rows(vals: Tensor, idx: Tensor, same_label: Tensor | None) -> tuple[Tensor, Tensor]:
    """Sort each row by (value, same label, position) ascending with stable sorts (last key first)."""
    order = idx.argsort(dim=1)
    vals, idx = vals.gather(1, order), idx.gather(1, order)
    if same_label is not None:
        same_label = same_label.gather(1, order)
        order = same_label.to(torch.uint8).argsort(dim=1, stable=True)
        vals, idx = vals.gather(1, order), idx.gather(1, order)
    order = vals.argsort(dim=1, stable=True)
    return vals.gather(1, order), idx.gather(1, order)


class _FaissSearcher:
    """A flat (exact) faiss index over ``refs``: inner product for similarities, L2 for Euclidean distances."""

    def __init__(self, refs: Tensor, distance: BaseDistance) -> None:
        try:
            import faiss
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(
                "backend='faiss' needs the faiss package: `pip install faiss-cpu` (or `pip install lit-metric[faiss]`)."
            ) from err
        self.distance = distance
        self.kind, self.normalize = faiss_metric(distance)
        self.n_refs = refs.shape[0]
        data = self._prepare(refs)
        self.index: Any = faiss.IndexFlatIP(data.shape[1]) if self.kind == "ip" else faiss.IndexFlatL2(data.shape[1])
        self.index.add(data)

    def _prepare(self, x: Tensor) -> Any:
        x = x.detach().float()
        if self.normalize:
            x = torch.nn.functional.normalize(x, dim=1)
        return x.cpu().contiguous().numpy()

    def search(self, start: int, q: Tensor, k: int, qi: Tensor | None) -> tuple[Tensor, Tensor]:
        """``(c, k + 1)`` ascending dissimilarities (or ``(c, k)`` when no extra neighbour exists) and ids of the
        queries ``q`` (``start``, their position, is not needed: faiss searches them as given)."""
        extra = 1 if qi is not None and bool((qi >= 0).any()) else 0
        kf = min(k + 1 + extra, self.n_refs)
        raw, ids = self.index.search(self._prepare(q), kf)
        raw_t = torch.from_numpy(raw)
        ids_t = torch.from_numpy(ids)
        if self.kind == "l2":
            measure = raw_t.clamp_min(0) if getattr(self.distance, "squared", False) else raw_t.clamp_min(0).sqrt()
        else:
            measure = raw_t
        dis = self.distance.to_dissimilarity(measure)
        if extra:
            qi_cpu = qi.cpu()  # type: ignore[union-attr]
            is_self = ids_t == qi_cpu.unsqueeze(1)
            # drop the query's own column; without it (not a reference, or lost in a tie) drop the last one
            self_col = torch.where(is_self.any(1), is_self.to(torch.uint8).argmax(1), torch.full_like(qi_cpu, kf - 1))
            cols = torch.arange(kf - 1).unsqueeze(0)
            cols = cols + (cols >= self_col.unsqueeze(1)).long()
            dis, ids_t = dis.gather(1, cols), ids_t.gather(1, cols)
        return dis.to(device=q.device, dtype=q.dtype), ids_t.long().to(q.device)


def faiss_metric(distance: BaseDistance) -> tuple[Literal["ip", "l2"], bool]:
    """The faiss flat-index metric serving ``distance`` and whether vectors are L2-normalised first.

    Cosine → inner product on normalised vectors; dot product → inner product; Euclidean → L2 (faiss returns
    squared distances: the square root is taken unless ``squared=True``).

    Raises:
        ValueError: for a measure faiss has no flat index for (use ``backend="torch"``).
    """
    from lit_metric.distances import CosineSimilarity, DotProductSimilarity, EuclideanDistance

    if isinstance(distance, CosineSimilarity):
        return "ip", True
    if isinstance(distance, DotProductSimilarity):
        return "ip", False
    if isinstance(distance, EuclideanDistance):
        return "l2", bool(distance.normalize)
    raise ValueError(
        "Expected argument `distance` to be CosineSimilarity, DotProductSimilarity or EuclideanDistance for "
        f"backend='faiss', but got {type(distance).__name__}. Use backend='torch' for other measures."
    )
