from __future__ import annotations

import numpy as np
import pytest
import torch

from lit_metric.distances import CosineSimilarity, EuclideanDistance
from lit_metric.metrics import RecallAtK


def numpy_recall(emb: np.ndarray, labels: np.ndarray, ks: tuple[int, ...], metric: str) -> dict[str, float]:
    """Brute-force leave-one-out Recall@K from the definition."""
    n = len(labels)
    if metric == "cosine":
        e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        dis = -(e @ e.T)
    else:
        dis = np.sqrt(((emb[:, None, :] - emb[None, :, :]) ** 2).sum(-1))
    hits = {k: [] for k in ks}
    for i in range(n):
        if (labels == labels[i]).sum() < 2:
            continue  # lone query: left out
        order = [j for j in np.argsort(dis[i], kind="stable") if j != i]
        for k in ks:
            hits[k].append(any(labels[j] == labels[i] for j in order[:k]))
    return {f"recall@{k}": float(np.mean(h)) for k, h in hits.items()}


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_matches_numpy_brute_force_over_several_updates(metric: str) -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(203, 6))  # continuous: no ties
    labels = rng.integers(0, 12, size=203)
    labels[0] = 99  # a lone class: left out
    ks = (1, 2, 4, 8, 16)
    dist = CosineSimilarity() if metric == "cosine" else EuclideanDistance(normalize=False)
    m = RecallAtK(k=ks, distance=dist, chunk_size=17)
    for chunk in np.array_split(np.arange(203), 5):
        m.update(torch.from_numpy(emb[chunk]), torch.from_numpy(labels[chunk]))
    ours = {k: float(v) for k, v in m.compute().items()}
    ref = numpy_recall(emb, labels, ks, metric)
    assert ours.keys() == ref.keys()
    for k in ref:
        assert ours[k] == pytest.approx(ref[k], abs=1e-6)


def test_never_retrieves_itself() -> None:
    # every point is far from all others except itself: without leave-one-out Recall@1 would be 1
    emb = torch.eye(6)
    m = RecallAtK(k=1)
    m.update(emb, torch.tensor([0, 0, 1, 1, 2, 2]))
    assert m.compute()["recall@1"] < 1


def test_pml_precision_at_1_agrees() -> None:
    calc = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    rng = np.random.default_rng(1)
    emb = torch.from_numpy(rng.normal(size=(150, 8)))
    labels = torch.from_numpy(rng.integers(0, 10, size=150))
    m = RecallAtK(k=1, distance=EuclideanDistance(normalize=False))  # PML's default k-NN: raw L2
    m.update(emb, labels)
    pml = calc.AccuracyCalculator(include=("precision_at_1",), k=1).get_accuracy(
        emb, labels, emb, labels, ref_includes_query=True
    )
    assert float(m.compute()["recall@1"]) == pytest.approx(pml["precision_at_1"], abs=1e-6)


def test_dedup_by_index() -> None:
    rng = np.random.default_rng(2)
    emb = torch.from_numpy(rng.normal(size=(40, 5)))
    labels = torch.from_numpy(rng.integers(0, 5, size=40))
    idx = torch.arange(40)
    ref = RecallAtK(k=(1, 4))
    ref.update(emb, labels, idx)
    padded = RecallAtK(k=(1, 4))
    padded.update(emb, labels, idx)
    padded.update(emb[:3], labels[:3], idx[:3])  # duplicates, as a padded DistributedSampler adds
    assert padded.compute() == ref.compute()


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="`k` to be >= 1"):
        RecallAtK(k=(0, 1))
    with pytest.raises(TypeError, match="`k` to be an int"):
        RecallAtK(k=(1.5,))  # type: ignore[arg-type]
    m = RecallAtK()
    with pytest.raises(ValueError, match="2-D"):
        m.update(torch.randn(3), torch.arange(3))
    with pytest.raises(TypeError, match="integer class ids"):
        m.update(torch.randn(3, 2), torch.zeros(3))
    with pytest.raises(RuntimeError, match="before any update"):
        RecallAtK().compute()
    m = RecallAtK()
    m.update(torch.randn(3, 2), torch.arange(3))
    with pytest.raises(ValueError, match="two or more members"):
        m.compute()


def test_ties_are_broken_against_the_query() -> None:
    # collapsed embeddings: every neighbour ties. Position order would let query 0 find its class-mate 1 first;
    # the pessimistic rule ranks the other class first, as RetrievalMetrics does.
    from lit_metric.metrics import RetrievalMetrics

    emb = torch.ones(6, 3)
    labels = torch.tensor([0, 0, 1, 1, 1, 1])
    metric = RecallAtK(k=(1, 2, 4, 5))
    metric.update(emb, labels)
    ours = {name: v.item() for name, v in metric.compute().items()}
    # class 0 (R = 1): its mate comes after the 4 others -> hit first at rank 5; class 1 (R = 3): after the 2 others
    expected = {"recall@1": 0.0, "recall@2": 0.0, "recall@4": 4 / 6, "recall@5": 1.0}
    assert ours == pytest.approx(expected)
    other = RetrievalMetrics(metrics=("recall@k",), k=(1, 2, 4, 5))
    other.update(emb, labels)
    assert {n: v.item() for n, v in other.compute().items()} == pytest.approx(expected)
