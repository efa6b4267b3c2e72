"""The compiled self-retrieval path (lit_metric.functional._topk_ext) against exact oracles.

Data are small integers (dot product) or ±1 vectors (cosine: every norm is a power of two), so every score is
exact in float32 and float64 alike: the oracles compare exactly, and exact ties are plentiful (the tie rule is
exercised).  Module constants are shrunk so that a few hundred rows span many blocks, ragged edges, buffer cuts
(a loose starting threshold) and exact redos (a tight one).
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
import torch

from lit_metric.distances import CosineSimilarity, DotProductSimilarity, EuclideanDistance
from lit_metric.functional import _topk_ext as ext_mod
from lit_metric.functional import knn, retrieval_metrics
from lit_metric.metrics import RetrievalMetrics
from tests._helpers.retrieval_oracles import brute_force_retrieval, dissimilarity_matrix

ALL = ("recall@k", "precision@k", "r_precision", "map@r")
KS = (1, 2, 4, 8)

needs_kernel = pytest.mark.skipif(ext_mod.load_extension() is None, reason="the C++ kernel cannot be built here")


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setattr(ext_mod, "MIN_REFS", 0)
    monkeypatch.setattr(ext_mod, "BLOCK", 32)
    monkeypatch.setattr(ext_mod, "SAMPLE_COLUMNS", 40)
    monkeypatch.setattr(ext_mod, "REDO_ROWS", 7)
    return monkeypatch


def _int_data(n: int, d: int = 8, seed: int = 0, classes: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-2, 3, (n, d), generator=g).float(), torch.randint(0, classes, (n,), generator=g)


def _sign_data(n: int, d: int = 16, seed: int = 0, classes: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 2, (n, d), generator=g).float() * 2 - 1
    return x, torch.randint(0, classes, (n,), generator=g)


def _oracle_rows(x: torch.Tensor, cosine: bool) -> np.ndarray:
    """(N, N) float64 scores, the diagonal at -inf."""
    a = x.double().numpy()
    if cosine:
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
    s = a @ a.T
    np.fill_diagonal(s, -np.inf)
    return s


@needs_kernel
@pytest.mark.parametrize("oversample", [0.3, 1.0, 2.0, 8.0])  # mostly redone rows ... many buffer cuts
@pytest.mark.parametrize("n,k", [(301, 20), (130, 60), (97, 3)])
def test_self_topk_is_the_exact_top_k(
    small_blocks: pytest.MonkeyPatch, oversample: float, n: int, k: int
) -> None:
    small_blocks.setattr(ext_mod, "OVERSAMPLE", oversample)
    x, _ = _int_data(n, seed=n + k)
    vals, ids = ext_mod.self_topk(x, k, DotProductSimilarity())
    assert vals.shape == ids.shape == (n, k + 1)
    s = _oracle_rows(x, cosine=False)
    want = -np.sort(-s, axis=1)[:, : k + 1]
    np.testing.assert_array_equal(vals.double().numpy(), want)  # the k + 1 best values, best first
    idx = ids.long().numpy()
    assert (idx != np.arange(n)[:, None]).all()  # never oneself
    assert all(len(set(row)) == k + 1 for row in idx)  # no reference twice
    np.testing.assert_array_equal(np.take_along_axis(s, idx, axis=1), want)  # each id really has its value


@pytest.mark.parametrize("n", [1, 2, 5, 8, 49])
def test_round_robin_schedule_covers_every_block_once_without_conflicts(n: int) -> None:
    rounds = ext_mod._round_robin(n)
    pairs = [p for r in rounds for p in r]
    assert sorted(pairs) == [(a, b) for a in range(n) for b in range(a, n)]
    for r in rounds:
        blocks = [x for a, b in r for x in ({a, b})]
        assert len(blocks) == len(set(blocks))  # no row block twice in a round


@needs_kernel
@pytest.mark.parametrize("threads", [1, 3])
def test_self_topk_on_several_threads(small_blocks: pytest.MonkeyPatch, threads: int) -> None:
    x, _ = _int_data(257, seed=11)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        vals, ids = ext_mod.self_topk(x, 9, DotProductSimilarity())
        assert torch.get_num_threads() == threads  # restored
    finally:
        torch.set_num_threads(old)
    s = _oracle_rows(x, cosine=False)
    want = -np.sort(-s, axis=1)[:, :10]
    np.testing.assert_array_equal(vals.double().numpy(), want)
    np.testing.assert_array_equal(np.take_along_axis(s, ids.long().numpy(), axis=1), want)


@needs_kernel
def test_a_failing_block_is_raised_not_hung(small_blocks: pytest.MonkeyPatch) -> None:
    x, _ = _int_data(200)
    with pytest.raises(RuntimeError, match="float32"):  # float64 products reach the kernel
        ext_mod.self_topk(x.double(), 5, DotProductSimilarity())


@needs_kernel
@pytest.mark.parametrize("oversample", [0.3, 2.0, 8.0])
@pytest.mark.parametrize("threads", [1, 2])
def test_cross_topk_is_the_exact_top_k(small_blocks: pytest.MonkeyPatch, oversample: float, threads: int) -> None:
    small_blocks.setattr(ext_mod, "OVERSAMPLE", oversample)
    q, _ = _int_data(150, seed=21)
    r, _ = _int_data(233, seed=22)
    q[:40] = r[100:140]  # queries 0..39 are references 100..139 (excluded from their own results) ...
    own = torch.full((150,), -1)
    own[:40] = torch.arange(100, 140)
    own[:5] = -1  # ... except the first five, which may retrieve their twin (a score like any other)
    k = 17
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        vals, ids = ext_mod.cross_topk(q, r, k, DotProductSimilarity(), own)
    finally:
        torch.set_num_threads(old)
    s = q.double().numpy() @ r.double().numpy().T
    s[np.arange(40)[5:], own[5:40].numpy()] = -np.inf
    want = -np.sort(-s, axis=1)[:, : k + 1]
    np.testing.assert_array_equal(vals.double().numpy(), want)
    idx = ids.long().numpy()
    assert all(len(set(row)) == k + 1 for row in idx)
    assert not (idx[5:40] == own[5:40].numpy()[:, None]).any()
    np.testing.assert_array_equal(np.take_along_axis(s, idx, axis=1), want)  # rows 0..4 keep their twin's score


@needs_kernel
def test_query_gallery_protocol_on_the_fast_path_matches_brute_force(small_blocks: pytest.MonkeyPatch) -> None:
    x, y = _sign_data(260, seed=8)
    rng = np.random.default_rng(9)
    role = rng.integers(0, 3, size=260)  # 0: query only, 1: gallery only, 2: both
    role[:90] = 0  # enough queries that are not references: the separate-query (cross) path
    is_q, is_g = role != 1, role != 0
    m = RetrievalMetrics(metrics=ALL, k=KS, distance=CosineSimilarity(), chunk_size=4096)
    m.update(x, y, is_query=torch.from_numpy(is_q), is_gallery=torch.from_numpy(is_g))
    ours = {name: float(v) for name, v in m.compute().items()}
    qi, gi = np.flatnonzero(is_q), np.flatnonzero(is_g)
    self_pos = np.array([int(np.flatnonzero(gi == i)[0]) if is_g[i] else -1 for i in qi])
    e = x.numpy()
    ref = brute_force_retrieval(dissimilarity_matrix(e[qi], e[gi], "cosine"), y.numpy()[qi], y.numpy()[gi], self_pos, KS)
    for name, value in ref.items():
        assert ours[name] == pytest.approx(value, abs=1e-6), name


@needs_kernel
def test_plain_search_on_the_fast_path_equals_the_chunked_path(small_blocks: pytest.MonkeyPatch) -> None:
    q, _ = _int_data(130, d=3, seed=31)  # ties everywhere
    r, _ = _int_data(170, d=3, seed=32)
    assert ext_mod.applies(r, 9, DotProductSimilarity(), chunk_size=4096, n_queries=130)
    fast = knn(q, r, 9, DotProductSimilarity(), chunk_size=4096)
    small_blocks.setenv("LIT_METRIC_CPU_KERNEL", "0")
    ext_mod.load_extension.cache_clear()
    try:
        slow = knn(q, r, 9, DotProductSimilarity(), chunk_size=4096)
    finally:
        ext_mod.load_extension.cache_clear()
    assert torch.equal(fast[1], slow[1]) and torch.equal(fast[0], slow[0])


@needs_kernel
def test_kernel_cuts_keep_the_best() -> None:
    # every score admitted (threshold -inf), a buffer of K + 16 slots cut again and again
    ext = ext_mod.load_extension()
    assert ext is not None
    n, k = 203, 5
    g = torch.Generator().manual_seed(1)
    s = torch.randn(16, n, generator=g)
    slots = torch.empty(16, k + 16, 2)
    fill = torch.zeros(16, dtype=torch.int32)
    thr = torch.full((16,), float("-inf"))
    for j0 in range(0, n, 24):  # ragged column blocks, rows only
        ext.feed(s[:, j0 : j0 + 24].contiguous(), slots, fill, thr, k, 0, j0, False)
    ext.finish(slots, fill, thr, k, 2)
    want_v, want_i = torch.topk(s, k, dim=1)
    assert torch.equal(slots[:, :k, 0], want_v) and torch.equal(slots.view(torch.int32)[:, :k, 1].long(), want_i)
    assert bool((thr > float("-inf")).all())  # the cuts raised every threshold


@needs_kernel
def test_kernel_checks_its_arguments() -> None:
    ext = ext_mod.load_extension()
    assert ext is not None
    slots = torch.empty(8, 19, 2)
    fill, thr = torch.zeros(8, dtype=torch.int32), torch.zeros(8)
    with pytest.raises(RuntimeError, match="overlap"):
        ext.feed(torch.zeros(4, 4), slots, fill, thr, 3, 0, 2, True)
    with pytest.raises(RuntimeError, match="out of range"):
        ext.feed(torch.zeros(4, 4), slots, fill, thr, 3, 6, 0, False)
    with pytest.raises(RuntimeError, match="float32"):
        ext.feed(torch.zeros(4, 4, dtype=torch.float64), slots, fill, thr, 3, 0, 4, True)
    with pytest.raises(RuntimeError, match="C >= K \\+ 16"):
        ext.finish(slots, fill, thr, 4, 1)
    with pytest.raises(RuntimeError, match=r"\(N, C, 2\)"):
        ext.finish(torch.empty(8, 19), fill, thr, 3, 1)


@needs_kernel
@pytest.mark.parametrize("metric", ["dot", "cosine"])
@pytest.mark.parametrize("oversample", [0.5, 2.0])
def test_retrieval_metrics_on_the_fast_path_match_brute_force(
    small_blocks: pytest.MonkeyPatch, metric: str, oversample: float
) -> None:
    small_blocks.setattr(ext_mod, "OVERSAMPLE", oversample)
    x, y = (_int_data if metric == "dot" else _sign_data)(203, seed=4)
    y[0] = 99  # a lone class: left out
    distance = DotProductSimilarity() if metric == "dot" else CosineSimilarity()
    assert ext_mod.applies(x, 30, distance, chunk_size=4096)
    m = RetrievalMetrics(metrics=ALL, k=KS, distance=distance, chunk_size=4096)
    m.update(x[:120], y[:120])
    m.update(x[120:], y[120:])
    ours = {name: float(v) for name, v in m.compute().items()}
    ref = brute_force_retrieval(dissimilarity_matrix(x.numpy(), x.numpy(), metric), y.numpy(), y.numpy(), np.arange(203), KS)
    for name, value in ref.items():
        assert ours[name] == pytest.approx(value, abs=1e-6), name


@needs_kernel
def test_knn_on_the_fast_path_applies_the_tie_rule(small_blocks: pytest.MonkeyPatch) -> None:
    x, y = _int_data(150, d=3, seed=5)  # three small-integer coordinates: ties everywhere
    q = torch.arange(150)
    fast = knn(x, x, 12, DotProductSimilarity(), chunk_size=4096, query_ref_index=q)
    small_blocks.setenv("LIT_METRIC_CPU_KERNEL", "0")
    ext_mod.load_extension.cache_clear()
    try:
        slow = knn(x, x, 12, DotProductSimilarity(), chunk_size=4096, query_ref_index=q)
    finally:
        ext_mod.load_extension.cache_clear()
    assert torch.equal(fast[1], slow[1]) and torch.equal(fast[0], slow[0])


@needs_kernel
def test_fast_path_is_only_taken_where_it_applies(small_blocks: pytest.MonkeyPatch) -> None:
    x, _ = _int_data(100)
    assert ext_mod.applies(x, 10, CosineSimilarity(), chunk_size=64)
    assert not ext_mod.applies(x, 10, EuclideanDistance(), chunk_size=64)  # not an inner product
    assert not ext_mod.applies(x.double(), 10, CosineSimilarity(), chunk_size=64)
    assert not ext_mod.applies(x, 40, CosineSimilarity(), chunk_size=64)  # 2 (k + 1) slots wider than a chunk
    assert not ext_mod.applies(x, 98, CosineSimilarity(), chunk_size=4096)  # k + 1 = every other reference
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:  # separate queries: a 32-row block for each thread
        assert ext_mod.applies(x, 10, CosineSimilarity(), chunk_size=64, n_queries=33)
        assert not ext_mod.applies(x, 10, CosineSimilarity(), chunk_size=64, n_queries=32)
    finally:
        torch.set_num_threads(old)
    small_blocks.setattr(ext_mod, "MIN_REFS", 101)
    assert not ext_mod.applies(x, 10, CosineSimilarity(), chunk_size=64)


def test_unbuildable_kernel_warns_and_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.utils.cpp_extension as cpp

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Ninja is required to load C++ extensions")

    monkeypatch.setattr(cpp, "load", broken)
    monkeypatch.setattr(ext_mod, "MIN_REFS", 0)
    ext_mod.load_extension.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="LIT_METRIC_CPU_KERNEL=0"):
            assert ext_mod.load_extension() is None
        x, y = _int_data(60, seed=2)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # warned once (cached), not on every search
            out = retrieval_metrics(x, y, distance=DotProductSimilarity(), metrics=ALL, k=KS)
        ref = brute_force_retrieval(dissimilarity_matrix(x.numpy(), x.numpy(), "dot"), y.numpy(), y.numpy(), np.arange(60), KS)
        assert {n: float(v) for n, v in out.items()} == pytest.approx(ref, abs=1e-6)
    finally:
        ext_mod.load_extension.cache_clear()


def test_environment_variable_disables_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIT_METRIC_CPU_KERNEL", "0")
    ext_mod.load_extension.cache_clear()
    try:
        assert ext_mod.load_extension() is None
    finally:
        ext_mod.load_extension.cache_clear()
    assert "lit_metric.functional._topk_ext" in sys.modules
