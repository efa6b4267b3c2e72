from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lit_metric import EmbeddingIndex
from lit_metric.callbacks import write_embeddings
from lit_metric.distances import CosineSimilarity, DotProductSimilarity, EuclideanDistance
from lit_metric.metrics import VerificationMetrics
from tests._helpers.retrieval_oracles import dissimilarity_matrix

DISTANCES = {"cosine": CosineSimilarity(), "euclidean": EuclideanDistance(normalize=False), "dot": DotProductSimilarity()}


def _brute_force(queries: np.ndarray, gallery: np.ndarray, ids: np.ndarray, k: int, metric: str) -> np.ndarray:
    dis = dissimilarity_matrix(queries, gallery, metric)
    return np.stack([ids[sorted(range(len(gallery)), key=lambda j: (dis[i, j], j))[:k]] for i in range(len(queries))])


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot"])
@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_search_matches_brute_force(metric: str, backend: str) -> None:
    if backend == "faiss":
        pytest.importorskip("faiss")
    rng = np.random.default_rng(0)
    gallery, queries = rng.normal(size=(70, 5)), rng.normal(size=(13, 5))
    gallery[10] = gallery[3]  # an exact tie: lower insertion position first
    ids = rng.permutation(1000)[:70]
    dtype = torch.float32 if backend == "faiss" else torch.float64
    index = EmbeddingIndex(torch.from_numpy(gallery).to(dtype), ids=torch.from_numpy(ids), distance=DISTANCES[metric],
                           backend=backend, chunk_size=4)  # type: ignore[arg-type]
    scores, got = index.search(torch.from_numpy(queries).to(dtype), k=6)
    assert torch.equal(got, torch.from_numpy(_brute_force(queries, gallery, ids, 6, metric)))
    ref = -dissimilarity_matrix(queries, gallery, metric) if metric != "euclidean" else dissimilarity_matrix(queries, gallery, metric)
    pos = {int(v): i for i, v in enumerate(ids)}
    expected = np.take_along_axis(ref, np.vectorize(pos.get)(got.numpy()), 1)
    np.testing.assert_allclose(scores.double().numpy(), expected, atol=1e-5 if backend == "faiss" else 1e-12)
    one_scores, one_ids = index.search(torch.from_numpy(queries[0]).to(dtype), k=2)  # a single 1-D query
    assert one_ids.shape == (2,) and torch.equal(one_ids, got[0, :2])


def test_add_save_load_roundtrip(tmp_path: Path) -> None:
    emb = torch.randn(20, 4)
    index = EmbeddingIndex(emb[:12], labels=torch.arange(12) % 3, distance=EuclideanDistance(squared=True, normalize=False), threshold=0.5)
    index.add(emb[12:], labels=torch.arange(12, 20) % 3)
    assert len(index) == 20 and index.ids.tolist() == list(range(20))
    path = tmp_path / "gallery.index"
    index.save(path)
    raw = torch.load(path, weights_only=True)  # plain types only: safe loading
    assert raw["format"] == "lit_metric.EmbeddingIndex" and raw["version"] == 1
    assert raw["distance"] == {"class_path": "lit_metric.distances.EuclideanDistance", "init_args": {"squared": True, "normalize": False}}
    loaded = EmbeddingIndex.load(path)
    assert isinstance(loaded.distance, EuclideanDistance) and loaded.distance.squared and loaded.threshold == 0.5
    q = torch.randn(5, 4)
    for a, b in zip(index.search(q, 3), loaded.search(q, 3)):
        assert torch.equal(a, b)
    _, ids = loaded.search(q, 3)
    assert torch.equal(loaded.labels_of(ids), ids % 3)


def test_verify_with_threshold_from_verification_metrics(tmp_path: Path) -> None:
    labels = torch.arange(6).repeat_interleave(8)
    emb = torch.randn(6, 8)[labels] * 2 + torch.randn(48, 8)
    metric = VerificationMetrics(distance=CosineSimilarity())
    metric.update(emb, labels)
    out = metric.compute()
    index = EmbeddingIndex(emb, labels=labels, threshold=float(out["threshold"]))
    index.save(tmp_path / "i.pt")
    loaded = EmbeddingIndex.load(tmp_path / "i.pt")
    i, j = torch.triu_indices(48, 48, 1)
    same = loaded.verify(emb[i], emb[j])
    assert (same == (labels[i] == labels[j])).double().mean().item() == pytest.approx(float(out["accuracy"]))
    # a similarity threshold: "same" when s >= threshold
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.6, 0.8]])  # cosine 0.6
    assert loaded.verify(a, b, threshold=0.6).item() and not loaded.verify(a, b, threshold=0.61).item()
    assert loaded.verify(a[0], b[0], threshold=0.5).ndim == 0
    d = EmbeddingIndex(emb, distance=EuclideanDistance(normalize=False))
    assert d.verify(torch.zeros(1, 2), torch.tensor([[3.0, 4.0]]), threshold=5.0).item()  # d <= threshold
    assert not d.verify(torch.zeros(1, 2), torch.tensor([[3.0, 4.0]]), threshold=4.9).item()


@pytest.mark.parametrize("suffix", [".pt", ".npz", ""])
def test_from_predictions_formats(tmp_path: Path, suffix: str) -> None:
    data = {"embeddings": torch.randn(10, 3), "ids": torch.arange(100, 110), "labels": torch.arange(10) % 2}
    path = write_embeddings(tmp_path / f"emb{suffix}", data)
    index = EmbeddingIndex.from_predictions(path)
    assert torch.equal(index.embeddings, data["embeddings"]) and torch.equal(index.ids, data["ids"])
    assert torch.equal(index.labels, data["labels"])  # type: ignore[arg-type]


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Expected argument `embeddings` to be 2-D"):
        EmbeddingIndex(torch.zeros(3))
    with pytest.raises(ValueError, match="Expected argument `ids` to have one entry"):
        EmbeddingIndex(torch.zeros(3, 2), ids=torch.arange(2))
    with pytest.raises(ValueError, match="Expected argument `backend`"):
        EmbeddingIndex(torch.zeros(3, 2), backend="annoy")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Expected argument `distance`"):
        EmbeddingIndex(torch.zeros(3, 2), distance="cosine")  # type: ignore[arg-type]
    index = EmbeddingIndex(torch.randn(3, 2))
    with pytest.raises(ValueError, match="at most the number of references"):
        index.search(torch.randn(1, 2), k=4)
    with pytest.raises(ValueError, match="Expected queries of dimension 2"):
        index.search(torch.randn(1, 3))
    with pytest.raises(ValueError, match="Expected argument `embeddings` to have dimension 2"):
        index.add(torch.randn(1, 3))
    with pytest.raises(ValueError, match="Expected `labels` exactly"):
        index.add(torch.randn(1, 2), labels=torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="Expected a verification threshold"):
        index.verify(torch.randn(1, 2), torch.randn(1, 2))
    with pytest.raises(ValueError, match="Expected `a` and `b` of the same shape"):
        index.verify(torch.randn(1, 2), torch.randn(2, 2), threshold=0.1)
    with pytest.raises(ValueError, match="Expected an index built with `labels`"):
        index.labels_of(torch.tensor([0]))
    torch.save({"embeddings": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not one"):
        EmbeddingIndex.load(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="Expected an `embeddings` entry"):
        EmbeddingIndex.from_predictions(write_embeddings(tmp_path / "x.pt", {"ids": torch.arange(2)}))
