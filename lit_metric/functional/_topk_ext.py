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
4. runs products and selection side by side on all cores (see :func:`_feed_all_blocks`).

The kernel is compiled on first use with ``torch.utils.cpp_extension`` (a C++ compiler and ninja are needed;
about half a minute, cached by torch afterwards).  Where it cannot be built, or with the environment variable
``LIT_METRIC_CPU_KERNEL=0``, callers fall back to the chunked path, which gives the same neighbours.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from functools import lru_cache
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


def applies(refs: Tensor, k: int, distance: BaseDistance, chunk_size: int) -> bool:
    """Whether :func:`self_topk` serves this search: float32 CPU references, a symmetric similarity, enough
    references to pay off, and buffers (``N × (2 (k + 1) + 16)`` candidates) no wider than a score chunk, so the
    peak memory stays within about twice the chunked path's ``chunk_size × N`` scores."""
    from lit_metric.distances import CosineSimilarity, DotProductSimilarity

    return (
        refs.device.type == "cpu"
        and refs.dtype == torch.float32
        and type(distance) in (CosineSimilarity, DotProductSimilarity)
        and MIN_REFS <= refs.shape[0] < 2**31
        and k + 1 < refs.shape[0] - 1
        and _capacity(k + 1) <= max(chunk_size, BLOCK)
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
    from lit_metric.distances import CosineSimilarity

    ext = load_extension()
    assert ext is not None  # internal: callers check `applies` first
    n, top = refs.shape[0], k + 1
    x = refs.detach()
    # both measures are inner products (of unit vectors for cosine: normalised once, as pairwise() does)
    x = (torch.nn.functional.normalize(x, dim=1, eps=1e-12) if isinstance(distance, CosineSimilarity) else x).contiguous()
    thr = _start_thresholds(x, top)
    cap = _capacity(top)
    slots = torch.empty(n, cap, 2, dtype=torch.float32)  # (value, int32 id bits) pairs
    fill = torch.zeros(n, dtype=torch.int32)
    threads = torch.get_num_threads()
    _feed_all_blocks(ext, x, slots, fill, thr, top, threads)
    ext.finish(slots, fill, thr, top, threads)
    out_v, out_i = slots[:, :top, 0], slots.view(torch.int32)[:, :top, 1]
    redo = (fill < 0).nonzero(as_tuple=True)[0]
    for start in range(0, redo.numel(), REDO_ROWS):
        r = redo[start : start + REDO_ROWS]
        s = x[r] @ x.T
        s[torch.arange(r.numel()), r] = float("-inf")
        v, i = torch.topk(s, top, dim=1, largest=True, sorted=True)
        out_v[r], out_i[r] = v, i.int()
    return out_v, out_i


def _feed_all_blocks(
    ext: ModuleType, x: Tensor, slots: Tensor, fill: Tensor, thr: Tensor, top: int, threads: int
) -> None:
    """Compute every block ``S[I, J]``, ``J >= I``, once and feed it to the kernel, on ``threads`` threads.

    Blocks are scheduled in rounds of a round-robin tournament between the row blocks: the blocks of one round
    touch pairwise disjoint rows, so the threads of a round never write the same buffer; a barrier separates
    rounds.  Each thread runs its products single-threaded (torch's thread count is 1 meanwhile), so products
    and selection run side by side on all cores.
    """
    n_blocks = -(-x.shape[0] // BLOCK)
    workers = max(1, min(threads, n_blocks))
    schedule = _round_robin(n_blocks)
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def work(w: int) -> None:
        try:
            for pairs in schedule:
                for a, b in pairs[w::workers]:
                    i0, j0 = a * BLOCK, b * BLOCK
                    s = x[i0 : i0 + BLOCK] @ x[j0 : j0 + BLOCK].T
                    if a == b:
                        s.fill_diagonal_(float("-inf"))  # never retrieve oneself
                    ext.feed(s, slots, fill, thr, top, i0, j0, a != b)
                barrier.wait()
        except BaseException as err:  # noqa: BLE001 - re-raised in the calling thread
            errors.append(err)
            barrier.abort()

    torch.set_num_threads(1)
    try:
        pool = [threading.Thread(target=work, args=(w,), daemon=True) for w in range(1, workers)]
        for t in pool:
            t.start()
        work(0)
        for t in pool:
            t.join()
    finally:
        torch.set_num_threads(threads)
    if errors:  # the failure itself, not the broken barrier it left the other threads
        raise next((e for e in errors if not isinstance(e, threading.BrokenBarrierError)), errors[0])


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


def _start_thresholds(x: Tensor, top: int) -> Tensor:
    """Per row, a value that about ``OVERSAMPLE × top`` of the row's scores exceed, from sampled columns."""
    n = x.shape[0]
    n_s = min(SAMPLE_COLUMNS, n)
    cols = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:n_s]
    j = min(n_s, math.ceil(OVERSAMPLE * top * n_s / (n - 1)))
    sample = x[cols]
    thr = torch.empty(n, dtype=torch.float32)
    for start in range(0, n, BLOCK * 4):
        s = x[start : start + BLOCK * 4] @ sample.T
        own = (cols >= start) & (cols < start + s.shape[0])
        s[cols[own] - start, own.nonzero(as_tuple=True)[0]] = float("-inf")
        thr[start : start + s.shape[0]] = torch.topk(s, j, dim=1, sorted=False).values.amin(1)
    # a row whose sample is too small (j-th value -inf) admits everything: no threshold at all
    return thr.contiguous()
