from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

from lit_metric.metrics import ClusteringMetrics


def _blobs(n: int = 240, classes: int = 6, spread: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    return rng.normal(size=(classes, 8))[labels] * 3 + spread * rng.normal(size=(n, 8)), labels


def test_matches_sklearn_reference() -> None:
    emb, labels = _blobs(spread=2.5)
    m = ClusteringMetrics(n_init=3, seed=7)
    for part in np.array_split(np.arange(len(labels)), 3):
        m.update(torch.from_numpy(emb[part]), torch.from_numpy(labels[part]))
    out = m.compute()
    clusters = KMeans(n_clusters=6, n_init=3, random_state=7).fit_predict(emb)
    assert float(out["nmi"]) == pytest.approx(normalized_mutual_info_score(labels, clusters), abs=1e-6)
    assert float(out["ami"]) == pytest.approx(adjusted_mutual_info_score(labels, clusters), abs=1e-6)
    assert 0.2 < float(out["ami"]) < float(out["nmi"]) < 1  # a hard but non-trivial case


def test_closed_form_perfect_and_random() -> None:
    emb, labels = _blobs(spread=0.01)
    m = ClusteringMetrics()
    m.update(torch.from_numpy(emb), torch.from_numpy(labels))
    out = m.compute()
    assert float(out["nmi"]) == pytest.approx(1.0) and float(out["ami"]) == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    noise = ClusteringMetrics()
    noise.update(torch.from_numpy(rng.normal(size=(600, 8))), torch.from_numpy(rng.integers(0, 6, size=600)))
    assert abs(float(noise.compute()["ami"])) < 0.02  # AMI is chance-corrected


def test_pml_nmi_ami_within_kmeans_noise() -> None:
    calc_mod = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    # mapping: PML "NMI"/"AMI" = our nmi/ami; PML clusters with faiss k-means (20 iterations), we with
    # scikit-learn's k-means++: equal up to k-means noise
    emb, labels = _blobs(n=400, classes=8, spread=2.0, seed=2)
    e, y = torch.from_numpy(emb).float(), torch.from_numpy(labels)
    m = ClusteringMetrics(n_init=5)
    m.update(e, y)
    ours = m.compute()
    pml = calc_mod.AccuracyCalculator(include=("NMI", "AMI"), device=torch.device("cpu")).get_accuracy(e, y)
    assert float(ours["nmi"]) == pytest.approx(pml["NMI"], abs=0.05)
    assert float(ours["ami"]) == pytest.approx(pml["AMI"], abs=0.05)


def test_duplicates_dropped_by_index() -> None:
    emb, labels = _blobs(n=60, spread=1.5)
    e, y = torch.from_numpy(emb), torch.from_numpy(labels)
    clean, padded = ClusteringMetrics(), ClusteringMetrics()
    clean.update(e, y, torch.arange(60))
    padded.update(e[30:], y[30:], torch.arange(30, 60))
    padded.update(e[:30], y[:30], torch.arange(30))
    padded.update(e[:1], y[:1], torch.arange(1))
    assert {k: float(v) for k, v in clean.compute().items()} == {k: float(v) for k, v in padded.compute().items()}


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="Expected argument `n_init`"):
        ClusteringMetrics(n_init=0)
    with pytest.raises(ValueError, match="Expected argument `max_iter`"):
        ClusteringMetrics(max_iter=0)
    with pytest.raises(ValueError, match="Expected argument `average_method`"):
        ClusteringMetrics(average_method="median")  # type: ignore[arg-type]
    m = ClusteringMetrics()
    with pytest.raises(TypeError, match="integer class ids"):
        m.update(torch.zeros(3, 2), torch.zeros(3))
    m.update(torch.randn(4, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="at least two classes"):
        m.compute()
    with pytest.raises(RuntimeError, match="before any update"):
        ClusteringMetrics().compute()
