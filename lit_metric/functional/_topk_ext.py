"""Exact self-retrieval k-NN on the CPU: each block of the symmetric score matrix computed once, selection in C++.

Leave-one-out retrieval over N references with a symmetric similarity (cosine, dot product) needs the top
``K`` of every row of ``S = X Xᵀ``.  The chunked path computes all N² scores and runs ``torch.topk`` on each
chunk; on the CPU the ``topk`` costs as much as the matrix product.  This path

1. computes only the blocks ``S[I, J]`` with ``J >= I`` (half the products) and feeds each to the rows of
   ``I`` and, transposed, to the rows of ``J``;
2. selects with a small compiled kernel (``lit_metric/csrc/topk_select.cpp``): per row, a buffer of
   candidates above an admission threshold; a score below it is rejected by one SIMD comparison;
3. starts every row's threshold at a value that a sample of 1,024 columns says about 2 K scores of the row
   exceed (a row where fewer than K do is redone by an exact ``topk``, so the result stays exact);
4. runs products and selection side by side on all cores (see :func:`_feed_symmetric`).

Separate queries (:func:`cross_topk`: query/gallery splits, plain searches) use steps 2–4 with every block of
``Q × M`` products computed.

The kernel is compiled on first use with ``torch.utils.cpp_extension`` (a C++ compiler and ninja are needed;
about half a minute, cached by torch afterwards).  Where it cannot be built, or with the environment variable
``LIT_METRIC_CPU_KERNEL=0``, callers fall back to the chunked path, which gives the same neighbours.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from collections.abc import Callable
from functools import lru_cache, partial
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from lit_metric.distances import BaseDistance

#: rows and columns of one score block
BLOCK = 1024
#: columns sampled to set the starting thresholds
SAMPLE_COLUMNS = 1024
#: the starting threshold admits about this many times K scores per row
OVERSAMPLE = 2.0
#: rows per exact redo (each a full row of scores)
REDO_ROWS = 256
#: below this many references the chunked path is as fast
MIN_REFS = 8192

_SOURCE = Path(__file__).resolve().parents[1] / "csrc" / "topk_select.cpp"
#: bump with any change to the C++ source's interface (torch also rebuilds when the source changes)
_EXT_NAME = "lit_metric_topk_select_v2"


@lru_cache(maxsize=1)
def load_extension() -> ModuleType | None:
    """The compiled selection kernel, building it on first use; ``None`` if disabled or the build fails."""
    if os.environ.get("LIT_METRIC_CPU_KERNEL", "1") == "0":
        return None
    try:
        from torch.utils.cpp_extension import load

        return load(name=_EXT_NAME, sources=[str(_SOURCE)], extra_cflags=["-O3"], verbose=False)
    except Exception as err:  # no compiler, no ninja, a read-only cache: the chunked path serves instead
        warnings.warn(
            f"lit_metric could not build its CPU k-NN kernel ({type(err).__name__}: {err}); exact self-retrieval "
            "uses the slower chunked path. Install a C++ compiler and ninja, or set LIT_METRIC_CPU_KERNEL=0 to "
            "silence this.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


def applies(refs: Tensor, k: int, distance: BaseDistance, chunk_size: int, n_queries: int | None = None) -> bool:
    """Whether the compiled selection serves this search: float32 CPU references, an inner-product measure,
    enough references to pay off, and buffers (``(2 (k + 1) + 16)`` candidates a query) no wider than a score
    chunk, so that peak memory stays within about twice the chunked path's ``chunk_size × N`` scores.

    ``n_queries``: for separate queries (:func:`cross_topk`), their number; threads work on whole blocks of
    queries, so there must be a block for every thread (fewer queries: the chunked path's parallel ``topk`` is
    faster).  ``None``: leave-one-out over the references (:func:`self_topk`).
    """
    from lit_metric.distances import CosineSimilarity, DotProductSimilarity

    return (
        refs.device.type == "cpu"
        and refs.dtype == torch.float32
        and type(distance) in (CosineSimilarity, DotProductSimilarity)
        and MIN_REFS <= refs.shape[0] < 2**31
        and k + 1 < refs.shape[0] - 1
        and _capacity(k + 1) <= max(chunk_size, BLOCK)
        and (n_queries is None or -(-n_queries // BLOCK) >= torch.get_num_threads())
        and load_extension() is not None
    )


def _capacity(top: int) -> int:
    # the kernel needs C >= K + 16 (a cut must free slots); 2K + 16 admits about K more candidates between cuts
    return 2 * top + 16


def self_topk(refs: Tensor, k: int, distance: BaseDistance) -> tuple[Tensor, Tensor]:
    """The ``k + 1`` largest similarities of every reference row to the *other* references, best first.

    Returns ``(values, ids)``, float32 and int32 ``(N, k + 1)`` views into the selection buffer (no copy of the
    result is made).  Ties with the last value may be cut arbitrarily: the caller fetches one neighbour more
    than it needs to detect them.  Rows that the kernel could not finish (fewer than ``k + 1`` scores above their
    starting threshold) are redone with an exact ``topk`` over their full row.
    """
    x = _unit_if_cosine(refs, distance)
    own = torch.arange(x.shape[0])
    return _select(x, x, own, k, _feed_symmetric)


def cross_topk(
    queries: Tensor, refs: Tensor, k: int, distance: BaseDistance, query_ref_index: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """:func:`self_topk` for separate queries: the ``k + 1`` largest similarities of each query to the
    references, a query's own reference (``query_ref_index[i] >= 0``) excluded.  Every block of ``Q × M`` scores
    is computed; only the selection is the compiled one (``(Q, k + 1)`` views, as in :func:`self_topk`)."""
    xq, xr = _unit_if_cosine(queries, distance), _unit_if_cosine(refs, distance)
    own = torch.full((xq.shape[0],), -1, dtype=torch.long) if query_ref_index is None else query_ref_index.cpu()
    return _select(xq, xr, own, k, partial(_feed_rows, xr=xr, own=own))


def _unit_if_cosine(x: Tensor, distance: BaseDistance) -> Tensor:
    """Both measures are inner products: of unit vectors for cosine (normalised once, as ``pairwise`` does)."""
    from lit_metric.distances import CosineSimilarity

    x = x.detach()
    return (torch.nn.functional.normalize(x, dim=1, eps=1e-12) if isinstance(distance, CosineSimilarity) else x).contiguous()


def _select(xq: Tensor, xr: Tensor, own: Tensor, k: int, feed: Callable[..., None]) -> tuple[Tensor, Tensor]:
    """Thresholds, buffers, ``feed(ext, xq, slots, fill, thr, top, threads)``, the sort, the exact redos."""
    ext = load_extension()
    assert ext is not None  # internal: callers check `applies` first
    q, top = xq.shape[0], k + 1
    thr = _start_thresholds(xq, xr, own, top)
    slots = torch.empty(q, _capacity(top), 2, dtype=torch.float32)  # (value, int32 id bits) pairs
    fill = torch.zeros(q, dtype=torch.int32)
    threads = torch.get_num_threads()
    feed(ext, xq, slots, fill, thr, top, threads)
    ext.finish(slots, fill, thr, top, threads)
    out_v, out_i = slots[:, :top, 0], slots.view(torch.int32)[:, :top, 1]
    redo = (fill < 0).nonzero(as_tuple=True)[0]
    for start in range(0, redo.numel(), REDO_ROWS):
        r = redo[start : start + REDO_ROWS]
        s = _exclude_own(xq[r] @ xr.T, own[r], 0)
        v, i = torch.topk(s, top, dim=1, largest=True, sorted=True)
        out_v[r], out_i[r] = v, i.int()
    return out_v, out_i


def _exclude_own(s: Tensor, own: Tensor, col0: int) -> Tensor:
    """Set ``s[i, own[i] - col0]`` to -inf where that column is in ``s`` (the query's own reference)."""
    col = own - col0
    hit = (own >= 0) & (col >= 0) & (col < s.shape[1])
    if bool(hit.any()):
        rows = hit.nonzero(as_tuple=True)[0]
        s[rows, col[rows]] = float("-inf")
    return s


def _in_threads(workers: int, threads: int, work: Callable[[int], None], barrier: threading.Barrier | None = None) -> None:
    """``work(w)`` for ``w`` in ``range(workers)`` on as many threads, torch single-threaded meanwhile; the first
    failure is re-raised here (the barrier, if any, is aborted so that no thread waits forever)."""
    errors: list[BaseException] = []

    def run(w: int) -> None:
        try:
            work(w)
        except BaseException as err:  # noqa: BLE001 - re-raised in the calling thread
            errors.append(err)
            if barrier is not None:
                barrier.abort()

    torch.set_num_threads(1)
    try:
        pool = [threading.Thread(target=run, args=(w,), daemon=True) for w in range(1, workers)]
        for t in pool:
            t.start()
        run(0)
        for t in pool:
            t.join()
    finally:
        torch.set_num_threads(threads)
    if errors:  # the failure itself, not the broken barrier it left the other threads
        raise next((e for e in errors if not isinstance(e, threading.BrokenBarrierError)), errors[0])


def _feed_rows(
    ext: ModuleType, xq: Tensor, slots: Tensor, fill: Tensor, thr: Tensor, top: int, threads: int, *, xr: Tensor, own: Tensor
) -> None:
    """Every block of ``xq @ xr.T`` to the rows' buffers; threads take whole query blocks (no shared rows)."""
    n_blocks = -(-xq.shape[0] // BLOCK)
    workers = max(1, min(threads, n_blocks))

    def work(w: int) -> None:
        for i0 in range(w * BLOCK, xq.shape[0], workers * BLOCK):
            xi, own_i = xq[i0 : i0 + BLOCK], own[i0 : i0 + BLOCK]
            for j0 in range(0, xr.shape[0], BLOCK):
                s = _exclude_own(xi @ xr[j0 : j0 + BLOCK].T, own_i, j0)
                ext.feed(s, slots, fill, thr, top, i0, j0, False)

    _in_threads(workers, threads, work)


def _feed_symmetric(ext: ModuleType, x: Tensor, slots: Tensor, fill: Tensor, thr: Tensor, top: int, threads: int) -> None:
    """Compute every block ``S[I, J]``, ``J >= I``, of ``x @ x.T`` once and feed it to both row sets.

    Blocks are scheduled in rounds of a round-robin tournament between the row blocks: the blocks of one round
    touch pairwise disjoint rows, so the threads of a round never write the same buffer; a barrier separates
    rounds.  Each thread runs its products single-threaded (torch's thread count is 1 meanwhile), so products
    and selection run side by side on all cores.
    """
    n_blocks = -(-x.shape[0] // BLOCK)
    workers = max(1, min(threads, n_blocks))
    schedule = _round_robin(n_blocks)
    barrier = threading.Barrier(workers)

    def work(w: int) -> None:
        for pairs in schedule:
            for a, b in pairs[w::workers]:
                i0, j0 = a * BLOCK, b * BLOCK
                s = x[i0 : i0 + BLOCK] @ x[j0 : j0 + BLOCK].T
                if a == b:
                    s.fill_diagonal_(float("-inf"))  # never retrieve oneself
                ext.feed(s, slots, fill, thr, top, i0, j0, a != b)
            barrier.wait()

    _in_threads(workers, threads, work, barrier)


def _round_robin(n: int) -> list[list[tuple[int, int]]]:
    """Rounds of block pairs ``(a, b)``, ``a <= b``, covering every pair once; within a round no block repeats.

    The circle method pairs ``n`` (or ``n + 1``, a bye) teams in ``n - 1`` (``n``) rounds; a team's bye is its
    diagonal block ``(a, a)``; with ``n`` even the diagonals form one last round.
    """
    teams: list[int] = list(range(n)) + ([-1] if n % 2 else [])
    m = len(teams)
    rounds = []
    for _ in range(m - 1):
        pairs = []
        for i in range(m // 2):
            a, b = teams[i], teams[m - 1 - i]
            pairs.append((max(a, b), max(a, b)) if min(a, b) < 0 else (min(a, b), max(a, b)))
        rounds.append(pairs)
        teams = [teams[0], teams[-1], *teams[1:-1]]
    if n % 2 == 0:
        rounds.append([(a, a) for a in range(n)])
    return rounds


def _start_thresholds(xq: Tensor, xr: Tensor, own: Tensor, top: int) -> Tensor:
    """Per query, a value that about ``OVERSAMPLE × top`` of its scores exceed, from sampled reference columns."""
    m = xr.shape[0]
    n_s = min(SAMPLE_COLUMNS, m)
    cols = torch.randperm(m, generator=torch.Generator().manual_seed(0))[:n_s]
    j = min(n_s, math.ceil(OVERSAMPLE * top * n_s / max(m - 1, 1)))
    sample = xr[cols]
    where = torch.full((m,), -1, dtype=torch.long)
    where[cols] = torch.arange(n_s)  # a reference's column in the sample, or -1
    thr = torch.empty(xq.shape[0], dtype=torch.float32)
    for start in range(0, xq.shape[0], BLOCK * 4):
        s = xq[start : start + BLOCK * 4] @ sample.T
        own_s = own[start : start + BLOCK * 4]
        s = _exclude_own(s, torch.where(own_s >= 0, where[own_s.clamp_min(0)], own_s), 0)
        thr[start : start + s.shape[0]] = torch.topk(s, j, dim=1, sorted=False).values.amin(1)
    # a row whose sample is too small (j-th value -inf) admits everything: no threshold at all
    return thr.contiguous()
