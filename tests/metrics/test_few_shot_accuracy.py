from __future__ import annotations

import numpy as np
import pytest
import torch

from lit_metric.distances import CosineSimilarity, EuclideanDistance
from lit_metric.functional import few_shot_accuracy
from lit_metric.metrics import FewShotAccuracy
from tests._helpers.retrieval_oracles import enumerate_few_shot


@pytest.mark.parametrize(
    ("metric", "method", "k_shot"), [("euclidean", "nn", 1), ("cosine", "nn", 2), ("euclidean", "prototype", 2)]
)
def test_monte_carlo_matches_exact_enumeration(metric: str, method: str, k_shot: int) -> None:
    # 4 classes × 3 items, overlapping: the exact expectation over all episodes vs 4,000 sampled episodes
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 3)
    emb = rng.normal(size=(4, 2))[labels] * 0.8 + rng.normal(size=(12, 2))
    exact = enumerate_few_shot(emb, labels, n_way=3, k_shot=k_shot, metric=metric, method=method)
    dist = CosineSimilarity() if metric == "cosine" else EuclideanDistance(normalize=False)
    acc, ci = few_shot_accuracy(
        torch.from_numpy(emb), torch.from_numpy(labels), distance=dist, n_way=3, k_shot=k_shot, n_query=1,
        episodes=4000, method=method, seed=1,  # type: ignore[arg-type]
    )
    assert 0.2 < exact < 0.95
    assert abs(float(acc) - exact) < 2.5 * float(ci) / 1.96  # within 2.5 standard errors
    assert 0.003 < float(ci) < 0.05


def test_closed_form_separated_and_collapsed() -> None:
    labels = torch.arange(5).repeat_interleave(4)
    separated = torch.eye(5)[labels] + 0.01 * torch.randn(20, 5)
    m = FewShotAccuracy(n_way=5, k_shot=1, n_query=3, episodes=20, method="prototype")
    m.update(separated, labels)
    assert m.compute()["few_shot_accuracy"].item() == 1.0
    collapsed = FewShotAccuracy(n_way=5, k_shot=1, episodes=20)
    collapsed.update(torch.ones(20, 5), labels)
    out = collapsed.compute()
    assert out["few_shot_accuracy"].item() == 0.0 and out["few_shot_ci95"].item() == 0.0  # ties count as wrong


def test_seed_reproducible_and_order_invariant_with_indices() -> None:
    rng = np.random.default_rng(2)
    labels = torch.from_numpy(np.repeat(np.arange(8), 5))
    emb = torch.from_numpy(rng.normal(size=(40, 4)))
    a = FewShotAccuracy(n_way=5, episodes=50, seed=3)
    a.update(emb, labels, torch.arange(40))
    perm = torch.from_numpy(rng.permutation(40))
    b = FewShotAccuracy(n_way=5, episodes=50, seed=3)
    b.update(emb[perm], labels[perm], perm)
    assert a.compute()["few_shot_accuracy"] == b.compute()["few_shot_accuracy"]
    c = FewShotAccuracy(n_way=5, episodes=50, seed=4)
    c.update(emb, labels, torch.arange(40))
    assert c.compute()["few_shot_accuracy"] != a.compute()["few_shot_accuracy"]


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="Expected argument `n_way` to be >= 2"):
        FewShotAccuracy(n_way=1)
    with pytest.raises(ValueError, match="Expected argument `k_shot`"):
        FewShotAccuracy(k_shot=0)
    with pytest.raises(ValueError, match="Expected argument `n_query`"):
        FewShotAccuracy(n_query=0)
    with pytest.raises(ValueError, match="Expected argument `episodes`"):
        FewShotAccuracy(episodes=0)
    with pytest.raises(ValueError, match="Expected argument `method`"):
        FewShotAccuracy(method="svm")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Expected argument `distance`"):
        FewShotAccuracy(distance="cosine")  # type: ignore[arg-type]
    m = FewShotAccuracy(n_way=3, k_shot=2)
    m.update(torch.randn(9, 2), torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 3]))
    with pytest.raises(ValueError, match="at least n_way=3 classes"):
        m.compute()
    with pytest.raises(RuntimeError, match="before any update"):
        FewShotAccuracy().compute()
