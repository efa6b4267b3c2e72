from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from lit_metric.distances import CosineSimilarity, DotProductSimilarity, EuclideanDistance
from lit_metric.functional import knn, retrieval_metrics
from lit_metric.metrics import RecallAtK, RetrievalMetrics
from tests._helpers.retrieval_oracles import brute_force_retrieval, dissimilarity_matrix

KS = (1, 2, 4, 8)
ALL = ("recall@k", "precision@k", "r_precision", "map@r")
DISTANCES = {
    "cosine": CosineSimilarity(),
    "euclidean": EuclideanDistance(normalize=False),
    "dot": DotProductSimilarity(),
}


def _as_floats(values: dict[str, torch.Tensor]) -> dict[str, float]:
    return {name: float(v) for name, v in values.items()}


def _data(n: int = 180, d: int = 6, classes: int = 14, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    centers = rng.normal(size=(classes, d))
    emb = centers[labels] * 0.7 + rng.normal(size=(n, d))  # non-normalised, overlapping classes, no ties
    labels[0] = 99  # a lone class: left out
    return emb, labels


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot"])
def test_leave_one_out_matches_brute_force(metric: str) -> None:
    emb, labels = _data()
    m = RetrievalMetrics(metrics=ALL, k=KS, distance=DISTANCES[metric], chunk_size=23)
    for part in np.array_split(np.arange(len(labels)), 4):
        m.update(torch.from_numpy(emb[part]), torch.from_numpy(labels[part]))
    ours = _as_floats(m.compute())
    ref = brute_force_retrieval(dissimilarity_matrix(emb, emb, metric), labels, labels, np.arange(len(labels)), KS)
    assert list(ours) == [f"recall@{k}" for k in KS] + [f"precision@{k}" for k in KS] + ["r_precision", "map@r"]
    for name, value in ref.items():
        assert ours[name] == pytest.approx(value, abs=1e-6), name


def test_query_gallery_in_shop_protocol_matches_brute_force() -> None:
    emb, labels = _data(n=160, seed=1)
    rng = np.random.default_rng(2)
    role = rng.integers(0, 3, size=len(labels))  # 0: query only, 1: gallery only, 2: both
    is_q, is_g = role != 1, role != 0
    m = RetrievalMetrics(metrics=ALL, k=KS, distance=CosineSimilarity(), chunk_size=16)
    for part in np.array_split(np.arange(len(labels)), 3):
        m.update(
            torch.from_numpy(emb[part]),
            torch.from_numpy(labels[part]),
            is_query=torch.from_numpy(is_q[part]),
            is_gallery=torch.from_numpy(is_g[part]),
        )
    ours = _as_floats(m.compute())
    q, g = np.flatnonzero(is_q), np.flatnonzero(is_g)
    self_pos = np.array([int(np.flatnonzero(g == i)[0]) if is_g[i] else -1 for i in q])
    ref = brute_force_retrieval(dissimilarity_matrix(emb[q], emb[g], "cosine"), labels[q], labels[g], self_pos, KS)
    for name, value in ref.items():
        assert ours[name] == pytest.approx(value, abs=1e-6), name


def test_ties_are_broken_against_the_query_and_order_does_not_matter() -> None:
    # integer grid points: many exactly equal Euclidean distances
    rng = np.random.default_rng(3)
    emb = rng.integers(0, 3, size=(90, 2)).astype(np.float64)
    labels = rng.integers(0, 4, size=90)
    dist = EuclideanDistance(normalize=False)
    ref = brute_force_retrieval(dissimilarity_matrix(emb, emb, "euclidean"), labels, labels, np.arange(90), KS)
    for perm in (np.arange(90), rng.permutation(90)):
        ours = _as_floats(
            retrieval_metrics(torch.from_numpy(emb[perm]), torch.from_numpy(labels[perm]), distance=dist, metrics=ALL, k=KS, chunk_size=7)
        )
        for name, value in ref.items():
            assert ours[name] == pytest.approx(value, abs=1e-6), name


def test_collapsed_embeddings_score_at_chance_not_one() -> None:
    # every embedding identical: an order-based tie rule would give recall@1 = 1 on class-sorted data
    labels = torch.arange(4).repeat_interleave(5)
    out = retrieval_metrics(torch.ones(20, 3), labels, distance=CosineSimilarity(), metrics=ALL, k=(1, 16))
    assert out["recall@1"] == 0 and out["precision@1"] == 0 and out["r_precision"] == 0 and out["map@r"] == 0
    assert out["recall@16"] == 1  # 15 other-class items come first, then the 4 same-class ones


def test_hand_made_closed_form() -> None:
    # 1-D points x = 0 1 3 4 10 with labels a a b b a.  Queries 0, 1 (R = 2) rank (hit, miss, miss, hit):
    # R-precision 1/2, AP@R = (1/1)/2 = 1/2; queries 2, 3 (R = 1): hit first, 1 and 1; query 4 (R = 2) ranks
    # (miss, miss, hit, hit): R-precision 0, AP@R 0, but its full AP would be (1/3 + 2/4)/2.
    emb = torch.tensor([[0.0], [1.0], [3.0], [4.0], [10.0]])
    labels = torch.tensor([0, 0, 1, 1, 0])
    out = _as_floats(retrieval_metrics(emb, labels, distance=EuclideanDistance(normalize=False), metrics=ALL, k=(1, 2, 4)))
    assert out["map@r"] == pytest.approx((0.5 + 0.5 + 1 + 1 + 0) / 5)
    assert out["r_precision"] == pytest.approx((0.5 + 0.5 + 1 + 1 + 0) / 5)
    assert out["recall@1"] == pytest.approx(0.8) and out["recall@4"] == pytest.approx(1.0)
    assert out["precision@2"] == pytest.approx((0.5 + 0.5 + 0.5 + 0.5 + 0) / 5)
    assert out["precision@4"] == pytest.approx((0.5 + 0.5 + 0.25 + 0.25 + 0.5) / 5)


def test_lone_queries_are_excluded() -> None:
    emb = torch.tensor([[0.0, 1.0], [0.1, 1.0], [1.0, 0.0], [0.9, 0.1]])
    with_lone = _as_floats(retrieval_metrics(emb, torch.tensor([0, 0, 1, 2]), distance=CosineSimilarity(), metrics=ALL, k=(1,)))
    only_pair = _as_floats(retrieval_metrics(emb[:2], torch.tensor([0, 0]), refs=emb, ref_labels=torch.tensor([0, 0, 1, 2]),
                                             query_ref_index=torch.tensor([0, 1]), distance=CosineSimilarity(), metrics=ALL, k=(1,)))
    assert with_lone == only_pair == {"recall@1": 1.0, "precision@1": 1.0, "r_precision": 1.0, "map@r": 1.0}
    with pytest.raises(ValueError, match="same-class reference"):
        retrieval_metrics(emb, torch.arange(4), distance=CosineSimilarity())


def test_r_larger_than_k_values_is_exact() -> None:
    # one class of 40, MAP@R needs 39 neighbours although k = (1,)
    emb, labels = _data(n=60, classes=2, seed=4)
    labels[0] = labels[1]
    ours = _as_floats(retrieval_metrics(torch.from_numpy(emb), torch.from_numpy(labels), distance=CosineSimilarity(), k=(1,)))
    ref = brute_force_retrieval(dissimilarity_matrix(emb, emb, "cosine"), labels, labels, np.arange(60), (1,))
    assert ours["map@r"] == pytest.approx(ref["map@r"], abs=1e-6)
    assert ours["r_precision"] == pytest.approx(ref["r_precision"], abs=1e-6)


def test_k_larger_than_gallery_is_clipped() -> None:
    emb = torch.tensor([[0.0], [1.0], [5.0]])
    out = _as_floats(retrieval_metrics(emb, torch.tensor([0, 0, 1]), distance=EuclideanDistance(normalize=False),
                                       metrics=("recall@k", "precision@k"), k=(1, 100)))
    assert out["recall@100"] == 1.0 and out["precision@100"] == pytest.approx(0.5)  # K clipped to the 2 others


def test_recall_agrees_with_recall_at_k() -> None:
    emb, labels = _data(seed=5)
    e, y = torch.from_numpy(emb), torch.from_numpy(labels)
    ours = RetrievalMetrics(metrics=("recall@k",), k=KS)
    old = RecallAtK(k=KS)
    ours.update(e, y)
    old.update(e, y)
    assert _as_floats(ours.compute()) == pytest.approx(_as_floats(old.compute()))


def test_duplicates_dropped_by_index() -> None:
    emb, labels = _data(n=50, seed=6)
    e, y, idx = torch.from_numpy(emb), torch.from_numpy(labels), torch.arange(50)
    clean = RetrievalMetrics(metrics=ALL)
    clean.update(e, y, idx)
    padded = RetrievalMetrics(metrics=ALL)
    padded.update(e[25:], y[25:], idx[25:])
    padded.update(e[:25], y[:25], idx[:25])
    padded.update(e[:3], y[:3], idx[:3])  # DistributedSampler padding
    assert _as_floats(padded.compute()) == _as_floats(clean.compute())


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot"])
def test_faiss_backend_matches_torch(metric: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("faiss")
    # several faiss calls of chunk_size queries (the package attribute `knn` is the function: patch the module)
    monkeypatch.setattr(sys.modules["lit_metric.functional.knn"], "FAISS_MIN_CHUNK", 1)
    emb, labels = _data(seed=7)
    emb[5] = emb[6]  # an exact duplicate pair: a tie
    labels[5] = labels[7]
    e, y = torch.from_numpy(emb).float(), torch.from_numpy(labels)
    results = []
    for backend in ("torch", "faiss"):
        m = RetrievalMetrics(metrics=ALL, distance=DISTANCES[metric], backend=backend, chunk_size=50)  # type: ignore[arg-type]
        m.update(e, y)
        results.append(_as_floats(m.compute()))
    assert results[1] == pytest.approx(results[0], abs=1e-6)
    q = torch.arange(40)
    t_scores, t_idx = knn(e[:40], e, 5, DISTANCES[metric], query_ref_index=q)
    f_scores, f_idx = knn(e[:40], e, 5, DISTANCES[metric], query_ref_index=q, backend="faiss")
    torch.testing.assert_close(f_scores, t_scores, atol=1e-4, rtol=1e-4)
    assert torch.equal(f_idx, t_idx)


def test_knn_tie_rule_lower_position_first() -> None:
    refs = torch.tensor([[1.0], [0.0], [1.0], [2.0], [1.0]])
    scores, idx = knn(torch.tensor([[1.0]]), refs, 3, EuclideanDistance(normalize=False), chunk_size=1)
    assert idx.tolist() == [[0, 2, 4]] and scores.tolist() == [[0.0, 0.0, 0.0]]


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_pml_accuracy_calculator_agrees(metric: str) -> None:
    calc_mod = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    # mapping: PML precision_at_1 / r_precision / mean_average_precision_at_r (k="max_bin_count", faiss L2 k-NN)
    # = our precision@1 / r_precision / map@r; PML ranks by L2, which equals cosine ranking on unit vectors
    emb, labels = _data(n=300, classes=12, seed=8)
    if metric == "cosine":
        emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    e, y = torch.from_numpy(emb).float(), torch.from_numpy(labels)
    calc = calc_mod.AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"), k="max_bin_count", device=torch.device("cpu")
    )
    ours_m = RetrievalMetrics(metrics=("precision@1", "r_precision", "map@r"), distance=DISTANCES[metric])
    ours_m.update(e, y)
    ours = _as_floats(ours_m.compute())
    pml = calc.get_accuracy(e, y)
    assert ours["precision@1"] == pytest.approx(pml["precision_at_1"], abs=1e-6)
    assert ours["r_precision"] == pytest.approx(pml["r_precision"], abs=1e-6)
    assert ours["map@r"] == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-6)
    # query/gallery (PML: reference given, ref_includes_query=False)
    q, g = np.arange(0, 300, 3), np.setdiff1d(np.arange(300), np.arange(0, 300, 3))
    qg = RetrievalMetrics(metrics=("precision@1", "r_precision", "map@r"), distance=DISTANCES[metric])
    is_q = torch.zeros(300, dtype=torch.bool)
    is_q[q] = True
    qg.update(e, y, is_query=is_q, is_gallery=~is_q)
    ours_qg = _as_floats(qg.compute())
    pml_qg = calc.get_accuracy(e[q], y[q], e[g], y[g], ref_includes_query=False)
    assert ours_qg["precision@1"] == pytest.approx(pml_qg["precision_at_1"], abs=1e-6)
    assert ours_qg["r_precision"] == pytest.approx(pml_qg["r_precision"], abs=1e-6)
    assert ours_qg["map@r"] == pytest.approx(pml_qg["mean_average_precision_at_r"], abs=1e-6)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="Expected argument `metrics`"):
        RetrievalMetrics(metrics=("mrr",))
    with pytest.raises(ValueError, match="Expected argument `metrics`"):
        RetrievalMetrics(metrics=())
    with pytest.raises(ValueError, match="Expected argument `k` to be >= 1"):
        RetrievalMetrics(k=(0,))
    with pytest.raises(TypeError, match="Expected argument `k` to be an int"):
        RetrievalMetrics(k=(1.5,))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Expected argument `k` to hold"):
        RetrievalMetrics(k=())
    with pytest.raises(ValueError, match="Expected argument `backend`"):
        RetrievalMetrics(backend="annoy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Expected argument `chunk_size`"):
        RetrievalMetrics(chunk_size=0)
    with pytest.raises(TypeError, match="Expected argument `distance`"):
        RetrievalMetrics(distance="cosine")  # type: ignore[arg-type]
    m = RetrievalMetrics()
    with pytest.raises(ValueError, match="Expected argument `embeddings` to be 2-D"):
        m.update(torch.zeros(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="integer class ids"):
        m.update(torch.zeros(3, 2), torch.zeros(3))
    with pytest.raises(TypeError, match="Expected argument `is_query` to be a boolean"):
        m.update(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), is_query=torch.ones(3))
    with pytest.raises(ValueError, match="Expected argument `is_gallery` to have shape"):
        m.update(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), is_gallery=torch.ones(2, dtype=torch.bool))
    with pytest.raises(RuntimeError, match="before any update"):
        RetrievalMetrics().compute()


def test_faiss_rejects_unsupported_distance() -> None:
    pytest.importorskip("faiss")

    class Manhattan(EuclideanDistance):
        pass

    RetrievalMetrics(distance=Manhattan(), backend="faiss")  # a subclass of a served measure is fine
    from lit_metric.distances import BaseDistance

    class Custom(BaseDistance):
        def pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return torch.cdist(x, y, p=1)

        def rowwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return (x - y).abs().sum(-1)

    with pytest.raises(ValueError, match="backend='faiss'"):
        RetrievalMetrics(distance=Custom(), backend="faiss")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    emb, labels = _data(seed=9)
    e, y = torch.from_numpy(emb).float(), torch.from_numpy(labels)
    cpu = RetrievalMetrics(metrics=ALL)
    cpu.update(e, y)
    gpu = RetrievalMetrics(metrics=ALL).cuda()
    gpu.update(e.cuda(), y.cuda())
    assert _as_floats(gpu.compute()) == pytest.approx(_as_floats(cpu.compute()), abs=1e-6)
